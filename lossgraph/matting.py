"""Image-matting losses on alpha mattes, and loss sets that route samples between matting and segmentation.

Inputs are ``pred`` and ``target`` alpha mattes ``(B, 1, H, W)`` in ``[0, 1]`` and the trimap-derived
``mask`` ``(B, 1, H, W)``, 1 on the unknown region. Masked terms are region means,

    loss = Σ l·r · area / (H·W·Σ r)        (0 when Σ r = 0)

with ``r = mask`` (unknown region) or ``1 - mask`` (known region). The default ``area=None`` means
``area = H·W``: the masked mean at any size. ``area=262144`` reproduces the source documents'
normaliser ``B·512²/Σ mask`` exactly (written for 512×512 crops).

The Laplacian term compares 5-level Laplacian pyramids (binomial 5×5 kernel, reflect padding); it is
linear, so the pyramid of ``pred - target`` is built once. Each level is a product with small
per-axis operator matrices (crop, reflect pad, blur, ``[::2]``, zero insertion) built from ``arange``
comparisons: sizes stay symbolic (a graph exported at 64×64 runs at any size >= 64) and the gradient
is plain MatMul. Sobel gradients are sums of shifted slices of a zero-padded image.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn.functional as F

from ._checks import check_choice, check_dtype, check_min_size, check_shapes, InputError
from ._functional import LossModule, is_tracing, safe_div, to_acc

#: the source documents' normaliser: crops of 512×512 pixels (``area=AREA_512`` reproduces them)
AREA_512 = 512 * 512
BINOMIAL = (1.0, 4.0, 6.0, 4.0, 1.0)  # / 16 per axis: the 5×5 kernel [1,4,6,4,1]ᵀ[1,4,6,4,1] / 256
MATTE = ("B", 1, "H", "W")
ROUTES = ("binary", "constant")


def laplacian_min_size(levels: int) -> int:
    """Smallest H and W a ``levels``-level pyramid accepts: the even-cropped size at the last level
    must exceed the reflect padding of 2, so it is at least 4 there, ``2^(levels + 1)`` at the top."""
    return 2 ** (int(levels) + 1)


def _check(fn: str, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> None:
    named = [("pred", pred), ("target", target)] + ([("mask", mask)] if mask is not None else [])
    for name, x in named:
        check_dtype(fn, name, x, "f" if name == "pred" else "fb", "a float tensor")
    check_shapes(fn, [(name, x, MATTE) for name, x in named])


def _per_image_sum(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).sum(1)


def _combine(num: torch.Tensor, den: torch.Tensor, scale: torch.Tensor | float, per_image: bool) -> torch.Tensor:
    """Batch value ``scale·Σnum / Σden`` or per image ``scale·num_b / den_b``; 0 where the denominator is 0."""
    if per_image:
        return safe_div(num * scale, den)
    return safe_div(num.sum() * scale, den.sum())


def _area_scale(x: torch.Tensor, area: float | None) -> torch.Tensor | float:
    """``area / (H·W)`` (1 for the default ``area=None``)."""
    if area is None:
        return 1.0
    return float(area) / (x.shape[-2] * x.shape[-1])


def _region(mask: torch.Tensor, known: bool) -> torch.Tensor:
    return 1 - mask if known else mask


# --- elementwise losses ----------------------------------------------------------------------------


def _l1(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return (p - t).abs()


def _smooth_l1(p: torch.Tensor, t: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """``0.5 d² / β`` where ``d = |p - t| < β``, else ``d - 0.5 β``.

    Eager: torch's fused kernel (10x faster than the where form at 8x512x512). Graphs: the same
    function as ``c (d - c/2) / β`` with ``c = min(d, β)`` (value and gradient equal, 0 at d = 0):
    five plain nodes that onnxruntime runs 1.6x faster than the exporter's decomposition of the fused
    kernel (Less, Pow, Where, ...; benchmarks/RESULTS.md).
    """
    if not is_tracing():
        return F.smooth_l1_loss(p, t, reduction="none", beta=beta)
    d = (p - t).abs()
    c = torch.clamp(d, max=beta)
    out = c * (d - 0.5 * c)
    return out if beta == 1.0 else out / beta


def _log_clamped(p: torch.Tensor) -> torch.Tensor:
    """``max(log p, -100)`` like ``F.binary_cross_entropy``, with zero (not NaN) gradient at p = 0."""
    pos = p > 0
    return torch.clamp(torch.where(pos, torch.log(torch.where(pos, p, torch.ones_like(p))), torch.full_like(p, -100.0)), min=-100.0)


def _bce(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return -(t * _log_clamped(p) + (1 - t) * _log_clamped(1 - p))


def _focal(p: torch.Tensor, t: torch.Tensor, alpha: float, gamma: float) -> torch.Tensor:
    q = 1 - (p * t + (1 - p) * (1 - t))  # 1 - p_t
    # q^γ with a zero (not NaN: 0·q^(γ-1) with γ < 1) gradient where q = 0, i.e. p = t ∈ {0, 1}
    pos = q > 0
    loss = _bce(p, t) * torch.where(pos, torch.where(pos, q, torch.ones_like(q)) ** gamma, torch.full_like(q, 0.0**gamma))
    if alpha >= 0:
        loss = (alpha * t + (1 - alpha) * (1 - t)) * loss
    return loss


def _region_parts(fn, pred, target, mask, elementwise, known):
    _check(fn, pred, target, mask)
    p = to_acc(pred)
    t, m = target.to(p.dtype), mask.to(p.dtype)
    r = _region(m, known)
    return _per_image_sum(elementwise(p, t) * r), _per_image_sum(r)


# --- Sobel gradient penalty ------------------------------------------------------------------------


def _shift_sum(x: torch.Tensor, dim: int, weights: Sequence[float], n) -> torch.Tensor:
    """``Σ_k w_k x[k : k + n]`` along ``dim`` (x already padded)."""
    out = None
    for k, w in enumerate(weights):
        if w == 0:
            continue
        term = x.narrow(dim, k, n) * w
        out = term if out is None else out + term
    return out


def _zero_pad1(x: torch.Tensor, dim: int) -> torch.Tensor:
    """One zero on each side of ``dim``, by concatenation: ``F.pad``'s backward in a gradient graph is
    a Pad with negative pads (a crop), which onnx's reference evaluator rejects; Concat's is Slice."""
    zero = torch.zeros_like(x.narrow(dim, 0, 1))
    return torch.cat([zero, x, zero], dim)


def sobel(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sobel responses ``(gx, gy)`` of ``(B, C, H, W)`` with zero padding 1 (cross-correlation with
    ``[[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]`` and its transpose, like ``F.conv2d(x, k, padding=1)``)."""
    h, w = x.shape[-2], x.shape[-1]
    xp = _zero_pad1(_zero_pad1(x, -1), -2)
    dx = _shift_sum(xp, -1, (-1.0, 0.0, 1.0), w)  # (.., H + 2, W)
    dy = _shift_sum(xp, -2, (-1.0, 0.0, 1.0), h)  # (.., H, W + 2)
    return _shift_sum(dx, -2, (1.0, 2.0, 1.0), h), _shift_sum(dy, -1, (1.0, 2.0, 1.0), w)


def _gradient_parts(pred, target, mask):
    fn = "gradient_penalty"
    _check(fn, pred, target, mask)
    p = to_acc(pred)
    t, m = target.to(p.dtype), mask.to(p.dtype)
    pgx, pgy = sobel(p)
    tgx, tgy = sobel(t)
    el = ((pgx - tgx).abs() + (pgy - tgy).abs() + 0.01 * (pgx.abs() + pgy.abs())) * m
    return _per_image_sum(el), _per_image_sum(m)


# --- Laplacian pyramid ------------------------------------------------------------------------------


def _reflect(q: torch.Tensor, n) -> torch.Tensor:
    """Reflect-pad index map onto ``[0, n)`` (``-1 -> 1``, ``n -> n - 2``; padding 2 needs ``n >= 3``)."""
    return torch.where(q < 0, -q, torch.where(q > n - 1, 2 * (n - 1) - q, q))


def _band(rows: torch.Tensor, width, gain: float, dtype: torch.dtype) -> torch.Tensor:
    """``T[r, q] = gain·w[q - rows[r]] / 16`` for ``0 <= q - rows[r] < 5``, else 0 (binomial ``w``):
    row ``r`` blurs a reflect-padded signal at position ``rows[r]``."""
    k = torch.arange(width)[None, :] - rows[:, None]
    out = None
    for j, w in enumerate(BINOMIAL):
        term = (k == j).to(dtype) * (gain * w / 16.0)
        out = term if out is None else out + term
    return out


def _level_operators(s, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Operators ``(C, D, P)`` for an axis of length ``s``, each applied as ``M @ x`` along it.

    ``C`` (e × s) crops to the even length ``e = 2·(s // 2)``; ``D = T_down·R·C`` (s//2 × s) pads by
    reflection (``R``, (e+4) × e), blurs and keeps every second entry; ``P = T_up·R·Z·D`` (e × s),
    ``Z`` (e × s//2) being zero insertion ×2 and ``T_up`` the blur with gain 2 (the 5×5 kernel
    times 4 over both axes). Built from ``arange`` comparisons, so sizes stay symbolic and nothing is
    sliced (slicing to ``2·(s // 2)`` makes the exporter specialise s).
    """
    half = s // 2
    e = 2 * half
    even, halves = torch.arange(e), torch.arange(half)
    crop = (even[:, None] == torch.arange(s)[None, :]).to(dtype)
    pad = (_reflect(torch.arange(e + 4) - 2, e)[:, None] == even[None, :]).to(dtype)
    insert = (even[:, None] == 2 * halves[None, :]).to(dtype)
    down = _band(2 * halves, e + 4, 1.0, dtype) @ (pad @ crop)
    up = _band(even, e + 4, 2.0, dtype) @ (pad @ insert)
    return crop, down, up @ down


def _apply(x: torch.Tensor, rows_op: torch.Tensor, cols_op: torch.Tensor) -> torch.Tensor:
    """``rows_op @ x @ cols_opᵀ`` over the last two axes."""
    return torch.matmul(torch.matmul(rows_op, x), cols_op.mT.contiguous())


def laplacian_pyramid(x: torch.Tensor, levels: int = 5) -> list[torch.Tensor]:
    """Band-pass levels ``[L_0, ..., L_{levels-1}]`` of ``(..., H, W)`` and the low-pass residual.

    At each level the image ``x_i`` is cropped to even size, ``down`` = blur then ``[::2, ::2]``,
    ``L_i = crop(x_i) - up(down)`` with ``up`` = zero insertion ×2 then the blur with the kernel ×4,
    and ``x_{i+1} = down``. Reconstruct by ``crop(x_i) = L_i + up(x_{i+1})``. Every step is a product
    with small per-axis operator matrices (:func:`_level_operators`).
    """
    out = []
    cur = x
    for _ in range(int(levels)):
        ch, dh, ph = _level_operators(cur.shape[-2], cur.dtype)
        cw, dw, pw = _level_operators(cur.shape[-1], cur.dtype)
        out.append(_apply(cur, ch, cw) - _apply(cur, ph, pw))
        cur = _apply(cur, dh, dw)
    out.append(cur)
    return out


def _laplacian_parts(pred, target, levels):
    fn = "laplacian"
    _check(fn, pred, target)
    if int(levels) < 1:
        raise InputError(f"laplacian: levels must be >= 1; got {levels}")
    check_min_size(fn, "pred", pred, (2, 3), laplacian_min_size(levels), f"a {levels}-level pyramid (reflect padding 2 at the last level)")
    p = to_acc(pred)
    d = p - target.to(p.dtype)
    num = None
    for i, band in enumerate(laplacian_pyramid(d, levels)[:-1]):
        term = band.abs().flatten(1).mean(1) * (2.0**i / int(levels))
        num = term if num is None else num + term
    return num, torch.ones_like(num)


# --- functional forms -------------------------------------------------------------------------------


def unknown_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, area: float | None = None) -> torch.Tensor:
    """L1 on the unknown region: ``Σ|pred - target|·mask · area / (H·W·Σmask)``.

    Args:
        pred, target: alpha mattes ``(B, 1, H, W)`` in ``[0, 1]``.
        mask: ``(B, 1, H, W)``, 1 on the unknown region of the trimap.
        area: normalising area; ``None`` is ``H·W`` (the masked mean), ``262144`` the source's 512².

    An empty mask gives 0.
    """
    num, den = _region_parts("unknown_l1", pred, target, mask, _l1, known=False)
    return _combine(num, den, _area_scale(pred, area), False)


def known_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, area: float | None = None) -> torch.Tensor:
    """L1 on the known region ``1 - mask``; normalised like :func:`unknown_l1` by ``Σ(1 - mask)``."""
    num, den = _region_parts("known_l1", pred, target, mask, _l1, known=True)
    return _combine(num, den, _area_scale(pred, area), False)


def known_smooth_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, area: float | None = None) -> torch.Tensor:
    """Smooth L1 (beta 1: ``0.5 d²`` below 1, ``|d| - 0.5`` above) on the known region ``1 - mask``."""
    num, den = _region_parts("known_smooth_l1", pred, target, mask, _smooth_l1, known=True)
    return _combine(num, den, _area_scale(pred, area), False)


def smooth_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, area: float | None = None) -> torch.Tensor:
    """Smooth L1 (beta 1) on the unknown region ``mask``, normalised like :func:`unknown_l1`."""
    num, den = _region_parts("smooth_l1", pred, target, mask, _smooth_l1, known=False)
    return _combine(num, den, _area_scale(pred, area), False)


def matting_bce(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, area: float | None = None) -> torch.Tensor:
    """Binary cross-entropy of alpha probabilities on the unknown region (``F.binary_cross_entropy``'s
    elementwise form, logs clamped at -100), normalised like :func:`unknown_l1`."""
    num, den = _region_parts("matting_bce", pred, target, mask, _bce, known=False)
    return _combine(num, den, _area_scale(pred, area), False)


def matting_focal(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    alpha: float = 0.25,
    gamma: float = 2.0,
    area: float | None = None,
) -> torch.Tensor:
    """Focal loss ``α_t (1 - p_t)^γ BCE(p, t)`` of alpha probabilities ``p = pred`` (torchvision's
    formula on probabilities; ``alpha < 0`` disables α_t) on the unknown region, normalised like
    :func:`unknown_l1`."""
    num, den = _region_parts("matting_focal", pred, target, mask, lambda p, t: _focal(p, t, alpha, gamma), known=False)
    return _combine(num, den, _area_scale(pred, area), False)


def gradient_penalty(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, area: float | None = None) -> torch.Tensor:
    """Sobel gradient loss on the unknown region.

    ``(Σ|gx_p - gx_t|·m + Σ|gy_p - gy_t|·m + 0.01 Σ(|gx_p| + |gy_p|)·m) · area / (H·W·Σm)`` with
    ``(gx, gy) = sobel(·)`` (zero padding 1) and ``m = mask``; 0 when Σm = 0. Shapes as :func:`unknown_l1`.
    """
    num, den = _gradient_parts(pred, target, mask)
    return _combine(num, den, _area_scale(pred, area), False)


def laplacian(pred: torch.Tensor, target: torch.Tensor, levels: int = 5) -> torch.Tensor:
    """Laplacian-pyramid L1: ``(1 / levels) Σ_i 2^i · mean|L_i(pred) - L_i(target)|``.

    Pyramid of :func:`laplacian_pyramid` (5×5 binomial kernel / 256, reflect pad 2, crop to even,
    ``[::2, ::2]`` down, zero insertion ×2 and blur ×4 up). ``pred``, ``target``: ``(B, 1, H, W)``
    with ``H, W >= 2^(levels + 1)`` (64 for 5 levels); smaller raises ValueError.
    """
    num, den = _laplacian_parts(pred, target, levels)
    return _combine(num, den, 1.0, False)


# --- modules ---------------------------------------------------------------------------------------


class _MaskedTerm(LossModule):
    """A masked matting term: ``forward(pred, target, mask)``; :meth:`per_image` gives ``(B,)`` values."""

    def _parts(self, pred, target, mask):
        raise NotImplementedError

    def _scale(self, pred):
        return _area_scale(pred, self._params.get("area"))

    def forward(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return _combine(*self._parts(pred, target, mask), self._scale(pred), False)

    def per_image(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The loss of each image on its own (what a batch of 1 gives), shape ``(B,)``."""
        return _combine(*self._parts(pred, target, mask), self._scale(pred), True)


class _Region(_MaskedTerm):
    _elementwise = staticmethod(_l1)
    _known = False

    def __init__(self, area: float | None = None) -> None:
        super().__init__(area=area)

    def _parts(self, pred, target, mask):
        return _region_parts(self.name, pred, target, mask, self._elementwise, self._known)


class UnknownL1(_Region):
    """Module form of :func:`unknown_l1`."""

    name = "unknown_l1"


class KnownL1(_Region):
    """Module form of :func:`known_l1`."""

    name = "known_l1"
    _known = True


class KnownSmoothL1(_Region):
    """Module form of :func:`known_smooth_l1`."""

    name = "known_smooth_l1"
    _elementwise = staticmethod(_smooth_l1)
    _known = True


class SmoothL1(_Region):
    """Module form of :func:`smooth_l1`."""

    name = "smooth_l1"
    _elementwise = staticmethod(_smooth_l1)


class MattingBCE(_Region):
    """Module form of :func:`matting_bce`."""

    name = "matting_bce"
    _elementwise = staticmethod(_bce)


class MattingFocal(_MaskedTerm):
    """Module form of :func:`matting_focal`."""

    name = "matting_focal"

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0, area: float | None = None) -> None:
        super().__init__(alpha=float(alpha), gamma=float(gamma), area=area)

    def _parts(self, pred, target, mask):
        a, g = self._params["alpha"], self._params["gamma"]
        return _region_parts(self.name, pred, target, mask, lambda p, t: _focal(p, t, a, g), known=False)


class GradientPenalty(_MaskedTerm):
    """Module form of :func:`gradient_penalty`."""

    name = "gradient_penalty"

    def __init__(self, area: float | None = None) -> None:
        super().__init__(area=area)

    def _parts(self, pred, target, mask):
        return _gradient_parts(pred, target, mask)


class Laplacian(LossModule):
    """Module form of :func:`laplacian`: ``forward(pred, target)``."""

    name = "laplacian"

    def __init__(self, levels: int = 5) -> None:
        super().__init__(levels=int(levels))

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return laplacian(pred, target, **self._params)

    def per_image(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The loss of each image on its own, shape ``(B,)`` (``mask`` is not used)."""
        return _combine(*_laplacian_parts(pred, target, self._params["levels"]), 1.0, True)


# --- loss sets --------------------------------------------------------------------------------------

#: loss-set term key -> its module class (keys are the source's loss names)
TERMS: Mapping[str, type] = {
    "unknown_l1": UnknownL1,
    "known_l1": KnownL1,
    "known_smooth_l1": KnownSmoothL1,
    "smooth_l1": SmoothL1,
    "bce": MattingBCE,
    "sigmoid_focal": MattingFocal,
    "gradient_penalty": GradientPenalty,
    "laplacian": Laplacian,
}


def _build_terms(fn: str, keys: Sequence[str], area: float | None, levels: int) -> dict[str, LossModule]:
    out = {}
    for k in keys:
        check_choice(fn, "loss", k, tuple(TERMS))
        cls = TERMS[k]
        out[k] = cls(levels=levels) if cls is Laplacian else cls(area=area)
    return out


class MattingSet(LossModule):
    """Several matting terms at once: ``forward(pred, target, mask) -> {key: loss}``.

    Args:
        losses: term keys, from :data:`TERMS` (``unknown_l1``, ``known_l1``, ``known_smooth_l1``,
            ``smooth_l1``, ``bce``, ``sigmoid_focal``, ``gradient_penalty``, ``laplacian``).
        area: the masked terms' ``area``; levels: the Laplacian's.

    Each value equals the term's own loss on the batch; the ONNX graph has one output per key.
    """

    name = "matting_set"

    def __init__(self, losses: Sequence[str] = ("unknown_l1", "known_l1", "gradient_penalty"),
                 area: float | None = None, levels: int = 5) -> None:
        super().__init__(losses=list(losses), area=area, levels=int(levels))
        self.terms = torch.nn.ModuleDict(_build_terms(self.name, losses, area, levels))

    def forward(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        _check(self.name, pred, target, mask)
        return {k: (t(pred, target) if isinstance(t, Laplacian) else t(pred, target, mask)) for k, t in self.terms.items()}


def segmentation_samples(target: torch.Tensor, route: str = "binary") -> torch.Tensor:
    """Per-sample bool ``(B,)``: which samples are segmentation samples.

    ``route='binary'``: every target value is 0 or 1 (the source comment's intent, "only 0 and 1");
    ``route='constant'``: the target is all 0 or all 1 (the source's code ``all(t==0) or all(t==1)``).
    """
    t = target.flatten(1)
    if route == "binary":
        return ((t == 0) | (t == 1)).all(dim=1)
    return (t == 0).all(dim=1) | (t == 1).all(dim=1)


class SegMattingSet(LossModule):
    """Per-sample routing between segmentation and matting terms: ``forward(pred, target, mask) -> {key: loss}``.

    Each sample is a segmentation sample (see :func:`segmentation_samples`) or a matting sample;
    term ``k`` is the sum over the samples routed to a set containing ``k`` of the term's value on
    that sample alone (batch of 1), like the source's per-sample loop. Keys: ``seg`` then the new
    ones of ``matting``; every key is always output, 0 when no sample took it.
    """

    name = "seg_matting_set"

    def __init__(self, seg: Sequence[str] = ("bce",), matting: Sequence[str] = ("unknown_l1", "known_l1"),
                 route: str = "binary", area: float | None = None, levels: int = 5) -> None:
        check_choice(self.name, "route", route, ROUTES)
        super().__init__(seg=list(seg), matting=list(matting), route=route, area=area, levels=int(levels))
        keys = list(dict.fromkeys([*seg, *matting]))
        self.terms = torch.nn.ModuleDict(_build_terms(self.name, keys, area, levels))
        self._in_seg = {k: k in seg for k in keys}
        self._in_matting = {k: k in matting for k in keys}

    def forward(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        _check(self.name, pred, target, mask)
        is_seg = segmentation_samples(target, self._params["route"])
        out = {}
        for k, term in self.terms.items():
            values = term.per_image(pred, target, mask)
            take = (is_seg if self._in_seg[k] else torch.zeros_like(is_seg)) | (
                ~is_seg if self._in_matting[k] else torch.zeros_like(is_seg)
            )
            out[k] = torch.where(take, values, torch.zeros_like(values)).sum()
        return out


def matting_set(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                losses: Sequence[str] = ("unknown_l1", "known_l1", "gradient_penalty"),
                area: float | None = None, levels: int = 5) -> dict[str, torch.Tensor]:
    """Functional form of :class:`MattingSet`: ``{key: loss}`` for each key of ``losses``."""
    return MattingSet(losses, area, levels)(pred, target, mask)


def seg_matting_set(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                    seg: Sequence[str] = ("bce",), matting: Sequence[str] = ("unknown_l1", "known_l1"),
                    route: str = "binary", area: float | None = None, levels: int = 5) -> dict[str, torch.Tensor]:
    """Functional form of :class:`SegMattingSet` (per-sample routing, summed over samples)."""
    return SegMattingSet(seg, matting, route, area, levels)(pred, target, mask)

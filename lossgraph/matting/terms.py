"""Per-pixel matting terms and their losses: L1, smooth L1, BCE, focal on a trimap region, the Sobel
gradient penalty and the Laplacian pyramid L1, each a functional form and a thin Module.

Inputs are ``pred`` and ``target`` alpha mattes ``(B, 1, H, W)`` in ``[0, 1]`` and the trimap-derived
``mask`` ``(B, 1, H, W)``, 1 on the unknown region. Masked terms are region means,

    loss = Σ l·r · area / (H·W·Σ r)        (0 when Σ r = 0)

with ``r = mask`` (unknown region) or ``1 - mask`` (known region). The default ``area=None`` means
``area = H·W``: the masked mean at any size. ``area=262144`` reproduces the source documents'
normaliser ``B·512²/Σ mask`` exactly (written for 512×512 crops). The Laplacian term compares
5-level Laplacian pyramids (:mod:`lossgraph.matting.operators`); it is linear, so the pyramid of
``pred - target`` is built once.

Every term Module has ``per_sample(pred, target, mask) -> (B,)``: the loss of each sample alone
(what a batch of 1 gives), which the loss sets route.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._checks import InputError, check_dtype, check_min_size, check_shapes
from .._functional import LossModule, check_unit, is_tracing, safe_div, to_acc
from .operators import laplacian_min_size, laplacian_pyramid, sobel

#: the source documents' normaliser: crops of 512×512 pixels (``area=AREA_512`` reproduces them)
AREA_512 = 512 * 512


MATTE = ("B", 1, "H", "W")


def _check(fn: str, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> None:
    named = [("pred", pred), ("target", target)] + ([("mask", mask)] if mask is not None else [])
    for name, x in named:
        check_dtype(fn, name, x, "f" if name == "pred" else "fb", "a float tensor")
    check_shapes(fn, [(name, x, MATTE) for name, x in named])
    if mask is not None:  # a weight in [0, 1]; alpha targets may lie anywhere (offsets, trimaps)
        check_unit(fn, "mask", mask)


def _per_image_sum(x: torch.Tensor) -> torch.Tensor:
    """``(B, ...) -> (B,)``: the sum over every axis but the batch, as one reduction over those axes.

    Not ``x.flatten(1).sum(1)``: tract (0.23.9) computes a ReduceSum over the innermost axis alone as a
    sequential float32 running sum, 3e-5 off (relative) over the 262,144 pixels of a 512² matte; over
    the axes (1, 2, 3) it sums as accurately as onnxruntime (1.6e-6), which runs both forms alike
    (tests/data/reducesum_long_axis).
    """
    return x.sum(dim=tuple(range(1, x.dim())))


def _combine(num: torch.Tensor, den: torch.Tensor, scale: torch.Tensor | float, per_sample: bool) -> torch.Tensor:
    """Batch value ``scale·Σnum / Σden`` or per image ``scale·num_b / den_b``; 0 where the denominator is 0."""
    if per_sample:
        return safe_div(num * scale, den)
    return safe_div(num.sum() * scale, den.sum())


def _area_scale(x: torch.Tensor, area: float | None) -> torch.Tensor | float:
    """``area / (H·W)`` (1 for the default ``area=None``)."""
    if area is None:
        return 1.0
    return float(area) / (x.shape[-2] * x.shape[-1])


def _region(mask: torch.Tensor, known: bool) -> torch.Tensor:
    return 1 - mask if known else mask


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
    log_p = torch.log(torch.where(pos, p, torch.ones_like(p)))
    return torch.clamp(torch.where(pos, log_p, torch.full_like(p, -100.0)), min=-100.0)


def _bce(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return -(t * _log_clamped(p) + (1 - t) * _log_clamped(1 - p))


def _focal(p: torch.Tensor, t: torch.Tensor, alpha: float, gamma: float) -> torch.Tensor:
    q = 1 - (p * t + (1 - p) * (1 - t))  # 1 - p_t
    # q^γ with a zero (not NaN: 0·q^(γ-1) with γ < 1) gradient where q = 0, i.e. p = t ∈ {0, 1}
    pos = q > 0
    modulation = torch.where(pos, torch.where(pos, q, torch.ones_like(q)) ** gamma, torch.full_like(q, 0.0**gamma))
    loss = _bce(p, t) * modulation
    if alpha >= 0:
        loss = (alpha * t + (1 - alpha) * (1 - t)) * loss
    return loss


def _region_parts(fn, pred, target, mask, elementwise, known):
    _check(fn, pred, target, mask)
    p = to_acc(pred)
    t, m = target.to(p.dtype), mask.to(p.dtype)
    r = _region(m, known)
    return _per_image_sum(elementwise(p, t) * r), _per_image_sum(r)


def _gradient_parts(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    fn = "gradient_penalty"
    _check(fn, pred, target, mask)
    p = to_acc(pred)
    t, m = target.to(p.dtype), mask.to(p.dtype)
    pgx, pgy = sobel(p)
    tgx, tgy = sobel(t)
    el = ((pgx - tgx).abs() + (pgy - tgy).abs() + 0.01 * (pgx.abs() + pgy.abs())) * m
    return _per_image_sum(el), _per_image_sum(m)


def _laplacian_parts(pred: torch.Tensor, target: torch.Tensor, levels: int) -> tuple[torch.Tensor, torch.Tensor]:
    fn = "laplacian"
    _check(fn, pred, target)
    if int(levels) < 1:
        raise InputError(f"laplacian: levels must be >= 1; got {levels}")
    check_min_size(fn, "pred", pred, (2, 3), laplacian_min_size(levels),
                   f"a {levels}-level pyramid (reflect padding 2 at the last level)")
    p = to_acc(pred)
    d = p - target.to(p.dtype)
    num: torch.Tensor | None = None
    for i, band in enumerate(laplacian_pyramid(d, levels)[:-1]):
        term = band.abs().mean(dim=(1, 2, 3)) * (2.0**i / int(levels))  # (1, 2, 3): see _per_image_sum
        num = term if num is None else num + term
    assert num is not None  # levels >= 1
    return num, torch.ones_like(num)


def unknown_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, area: float | None = None) -> torch.Tensor:
    """L1 on the unknown region: ``Σ|pred - target|·mask · area / (H·W·Σmask)``.

    Args:
        pred: predicted alpha matte ``(B, 1, H, W)`` in ``[0, 1]``.
        target: ground-truth alpha matte ``(B, 1, H, W)`` in ``[0, 1]``.
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


def known_smooth_l1(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, area: float | None = None
) -> torch.Tensor:
    """Smooth L1 (beta 1: ``0.5 d²`` below 1, ``|d| - 0.5`` above) on the known region ``1 - mask``."""
    num, den = _region_parts("known_smooth_l1", pred, target, mask, _smooth_l1, known=True)
    return _combine(num, den, _area_scale(pred, area), False)


def smooth_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, area: float | None = None) -> torch.Tensor:
    """Smooth L1 (beta 1) on the unknown region ``mask``, normalised like :func:`unknown_l1`."""
    num, den = _region_parts("smooth_l1", pred, target, mask, _smooth_l1, known=False)
    return _combine(num, den, _area_scale(pred, area), False)


def matting_bce(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, area: float | None = None
) -> torch.Tensor:
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


def gradient_penalty(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, area: float | None = None
) -> torch.Tensor:
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


class _MaskedTerm(LossModule):
    """A masked matting term: ``forward(pred, target, mask)``; :meth:`per_sample` gives ``(B,)`` values."""

    def _parts(
        self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample numerator and denominator ``(B,)`` of the term."""
        raise NotImplementedError

    def _scale(self, pred: torch.Tensor) -> torch.Tensor | float:
        return _area_scale(pred, self._params.get("area"))

    def forward(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return _combine(*self._parts(pred, target, mask), self._scale(pred), False)

    def per_sample(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The loss of each image on its own (what a batch of 1 gives), shape ``(B,)``."""
        return _combine(*self._parts(pred, target, mask), self._scale(pred), True)


class _Region(_MaskedTerm):
    _elementwise = staticmethod(_l1)
    _known = False

    def __init__(self, area: float | None = None) -> None:
        super().__init__(area=area)

    def _parts(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
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

    def _parts(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, g = self._params["alpha"], self._params["gamma"]
        return _region_parts(self.name, pred, target, mask, lambda p, t: _focal(p, t, a, g), known=False)


class GradientPenalty(_MaskedTerm):
    """Module form of :func:`gradient_penalty`."""

    name = "gradient_penalty"

    def __init__(self, area: float | None = None) -> None:
        super().__init__(area=area)

    def _parts(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return _gradient_parts(pred, target, mask)


class Laplacian(LossModule):
    """Module form of :func:`laplacian`: ``forward(pred, target)``."""

    name = "laplacian"

    def __init__(self, levels: int = 5) -> None:
        super().__init__(levels=int(levels))

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return laplacian(pred, target, **self._params)

    def per_sample(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The loss of each image on its own, shape ``(B,)`` (``mask`` is not used)."""
        return _combine(*_laplacian_parts(pred, target, self._params["levels"]), 1.0, True)

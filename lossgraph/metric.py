"""Metric-learning losses: center loss (Wen et al. 2016) and ArcFace (Deng et al. 2019).

Both take embeddings ``features (N, D)`` and integer ``labels (N,)`` in ``[0, C)``, and a class
tensor ``(C, D)`` (centers, class weights) that is either a learned ``nn.Parameter`` of the module
(exported as an ONNX initializer; initial values from a seed, see ``lossgraph._seeded``) or a
graph input (``centers_from="input"`` / ``weight_from="input"``), then differentiable too.

Export-friendly: class membership is ``labels[:, None] == arange(C)`` (no one_hot/bincount), the
cross-entropy is ``log_softmax`` + gather (no SoftmaxCrossEntropyLoss node) and ArcFace's
``cos(θ + m)`` is ``cos θ cos m - sin θ sin m`` (no Acos node).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ._checks import InputTypeError, check_choice, check_dtype, check_shapes
from ._functional import LossModule, as_labels, log_softmax_at_labels, reduce, to_acc
from ._seeded import seeded_normal
from ._types import Reduction

FROM = ("parameter", "input")

#: floor of ``sin²θ`` in ArcFace: ``sin θ = sqrt(max(1 - cos²θ, SIN2_EPS))``, so value and gradient
#: are finite at ``cos θ = ±1``. ``1 - cos²θ`` is computed as ``(1 - cos θ)(1 + cos θ)`` with
#: ``1 ∓ cos θ = ‖f̂ ∓ ŵ‖² / 2`` (Kahan), accurate in float32 near θ = 0 where ``1 - cos²θ`` from a
#: float32 ``cos θ`` is rounding noise (up to 9.5e-7 for aligned vectors; it failed gradient parity
#: at D = 2 in 3% of batches); exactly aligned float32 vectors leave < 1e-13 (measured, D = 2..4096),
#: far under the floor, where float32 and float64 then agree. The floor
#: changes ``cos(θ + m)`` only for ``θ < 3.2e-5`` rad, by at most ``3.2e-5 · sin m``.
SIN2_EPS = 1e-9
#: norms below this are clamped when normalising (a zero vector stays zero, with finite gradient).
NORM_EPS = 1e-12


def _check(fn: str, features: torch.Tensor, labels: torch.Tensor, classes: torch.Tensor, what: str) -> torch.Tensor:
    """Check the inputs; return the labels as int64."""
    check_dtype(fn, "features", features, "f", "a float tensor")
    check_dtype(fn, "labels", labels, "i", "an integer tensor")
    check_dtype(fn, what, classes, "f", "a float tensor")
    check_shapes(fn, [("features", features, ("N", "D")), ("labels", labels, ("N",)), (what, classes, ("C", "D"))])
    return as_labels(fn, "labels", labels, classes.shape[0], None)


def _membership(labels: torch.Tensor, num_classes: int | torch.SymInt) -> torch.Tensor:
    """``(N, C)`` bool: ``labels[i] == j``, by comparison with ``arange(C)`` (exports with dynamic C)."""
    # a SymInt C while exporting keeps C dynamic; torch's stubs admit only int
    return labels[:, None] == torch.arange(num_classes, device=labels.device)  # type: ignore[arg-type]


def center_loss(
    features: torch.Tensor,
    labels: torch.Tensor,
    centers: torch.Tensor,
    lambda_c: float = 1.0,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Center loss with per-class batch counts.

    ``loss_i = λ/2 · ‖f_i - c_{y_i}‖² / n_{y_i}`` with ``n_j`` the number of samples of class ``j``
    in the batch; ``'mean'`` (default) gives ``λ/2 · mean_i ‖f_i - c_{y_i}‖² / n_{y_i}``, i.e. the
    mean over samples of the class-averaged squared distance. Classes absent from the batch add
    nothing (and get zero center gradient). Counts are constants of the batch (no gradient).

    Args:
        features: ``(N, D)`` float embeddings.
        labels: ``(N,)`` integer class ids in ``[0, C)``.
        centers: ``(C, D)`` float class centers.
        lambda_c: the weight λ.
        reduction: ``'none'`` (``(N,)``) | ``'mean'`` | ``'sum'``.

    Example:
        >>> f = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]]); y = torch.tensor([0, 0, 1])
        >>> c = torch.zeros(2, 2)
        >>> float(center_loss(f, y, c, reduction="sum"))  # (1/2 + 9/2) / 2 + 4/2 / 1
        4.5
    """
    fn = "center_loss"
    labels = _check(fn, features, labels, centers, "centers")
    f = to_acc(features)
    c = centers.to(f.dtype)
    counts = _membership(labels, c.shape[0]).to(f.dtype).sum(0)  # (C,) samples per class
    n_y = torch.clamp(counts.index_select(0, labels), min=1.0)  # (N,) count of each sample's class
    d = f - c.index_select(0, labels)
    return reduce(0.5 * lambda_c * (d * d).sum(1) / n_y, reduction, fn)


def _normalize(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of ``x`` divided by ``max(‖x‖, NORM_EPS)``, and their squared norms as exact numbers
    (1, or ``‖x‖² / NORM_EPS²`` for rows under the floor) rather than float32 ``1 ± 1e-7``."""
    sq = (x * x).sum(-1, keepdim=True)
    floor = NORM_EPS**2
    unit_sq = torch.where(sq < floor, sq / floor, torch.ones_like(sq))
    return x * torch.rsqrt(torch.clamp(sq, min=floor)), unit_sq[..., 0]


def _sin2(f: torch.Tensor, w: torch.Tensor, f_sq: torch.Tensor, w_sq: torch.Tensor) -> torch.Tensor:
    """``1 - cos²θ`` of normalised rows ``f``, ``w`` (``(N, D)``) as ``(1 - cos θ)(1 + cos θ)`` with
    ``1 ∓ cos θ = ‖f ∓ w‖² / 2 + 1 - (‖f‖² + ‖w‖²) / 2`` (the last terms 0 unless a row is zero)."""
    rest = 1.0 - 0.5 * (f_sq + w_sq)
    return (0.5 * ((f - w) ** 2).sum(1) + rest) * (0.5 * ((f + w) ** 2).sum(1) + rest)


def arcface(
    features: torch.Tensor,
    labels: torch.Tensor,
    weight: torch.Tensor,
    s: float = 64.0,
    m: float = 0.5,
    easy_margin: bool = False,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """ArcFace (additive angular margin) softmax cross-entropy.

    ``cos θ_ij = f̂_i · ŵ_j`` (rows normalised); logits ``s cos θ_ij`` except the target
    ``s φ(cos θ_{i y_i})`` with ``φ = cos(θ + m) = cos θ cos m - sin θ sin m`` and
    ``sin θ = sqrt(max(1 - cos²θ, SIN2_EPS))`` (finite value and gradient at ``cos θ = ±1``;
    ``1 - cos²θ`` computed from ``f̂ ∓ ŵ``, accurate in float32 near ``θ = 0``, see ``SIN2_EPS``);
    ``loss_i = -log_softmax(logits_i)[y_i]``.

    Where ``θ + m > π`` the margin would make the target logit increase with θ. The usual fixes,
    both from insightface (also ArcMarginProduct in arcface-pytorch):

    * ``easy_margin=False`` (default, insightface's default): where ``cos θ <= th = cos(π - m)``
      (``θ >= π - m``) use ``φ = cos θ - mm`` with ``mm = sin(π - m) · m`` (CosFace-like margin);
    * ``easy_margin=True``: no margin (``φ = cos θ``) where ``cos θ <= 0``.

    (insightface's newer ``arcface_torch`` applies the same ``th``/``mm`` rule.)

    Args:
        features: ``(N, D)`` float embeddings (any norm; a zero row gives ``cos θ = 0``).
        labels: ``(N,)`` integer class ids in ``[0, C)``.
        weight: ``(C, D)`` float class weights (any norm).
        s: logit scale (default 64).
        m: additive angular margin in radians (default 0.5).
        easy_margin: the threshold convention above.
        reduction: ``'none'`` (``(N,)``) | ``'mean'`` | ``'sum'``.

    With ``m = 0`` this is the normalised-softmax (CosFace with no margin) cross-entropy. A zero
    feature or weight row has, as with ``F.normalize``, a gradient scaled by ``1 / NORM_EPS``.

    Example:
        >>> f = torch.tensor([[math.cos(0.3), math.sin(0.3)]]); w = torch.eye(2)
        >>> round(float(arcface(f, torch.tensor([0]), w, s=4.0, m=0.5)), 6)  # log(1 + e^(4 sin .3 - 4 cos .8))
        0.183105
    """
    fn = "arcface"
    labels = _check(fn, features, labels, weight, "weight")
    f, f_sq = _normalize(to_acc(features))
    w, w_sq = _normalize(weight.to(f.dtype))
    cos = f @ w.transpose(0, 1)  # (N, C)
    cos_y = torch.gather(cos, 1, labels[:, None])[:, 0]
    sin2_y = _sin2(f, w.index_select(0, labels), f_sq, w_sq.index_select(0, labels))
    sin_y = torch.sqrt(torch.clamp(sin2_y, min=SIN2_EPS))
    phi = cos_y * math.cos(m) - sin_y * math.sin(m)
    if easy_margin:
        phi = torch.where(cos_y > 0, phi, cos_y)
    else:
        phi = torch.where(cos_y > math.cos(math.pi - m), phi, cos_y - math.sin(math.pi - m) * m)
    logits = s * torch.where(_membership(labels, cos.shape[1]), phi[:, None], cos)
    # z_y - log Σ exp(z), not a LogSoftmax node: tract 0.23 and onnx's reference evaluator compute that
    # node as log(softmax), which underflows to -inf (s = 64 spreads logits by up to 128)
    logp_y, _ = log_softmax_at_labels(logits, labels, torch.ones_like(labels, dtype=torch.bool))
    return reduce(-logp_y, reduction, fn)


class _ClassTensorLoss(LossModule):
    """A metric loss whose ``(C, D)`` class tensor is a seeded ``nn.Parameter`` or a forward input."""

    _what: str  # name of the class tensor ("centers", "weight")

    def _init_classes(self, source: str, num_classes: int, feat_dim: int, seed: int) -> None:
        check_choice(self.name, f"{self._what}_from", source, FROM)
        self._from_input = source == "input"
        if not self._from_input:
            values = torch.from_numpy(seeded_normal(seed, (num_classes, feat_dim)))
            self.register_parameter(self._what, nn.Parameter(values))

    def _classes(self, features: torch.Tensor, given: torch.Tensor | None) -> torch.Tensor:
        if self._from_input:
            if given is None:
                raise InputTypeError(f"{self.name}: {self._what}_from='input' needs the {self._what} input (C, D)")
            return given
        if given is not None:
            raise InputTypeError(f"{self.name}: {self._what} is a parameter of this module "
                                 f"({self._what}_from='parameter'); pass only features and labels")
        own = getattr(self, self._what)
        check_shapes(self.name, [(self._what, own, ("C", "D")), ("features", features, ("N", "D"))])
        return own


class CenterLoss(_ClassTensorLoss):
    """Module form of :func:`center_loss`.

    ``centers_from="parameter"`` (default): ``centers`` is an ``nn.Parameter`` ``(num_classes,
    feat_dim)`` with standard-normal initial values from ``seed``; ``forward(features, labels)``.
    ``centers_from="input"``: ``forward(features, labels, centers)`` (``num_classes``, ``feat_dim``
    and ``seed`` are then unused).
    """

    name = "center_loss"
    _what = "centers"

    def __init__(
        self,
        num_classes: int = 10,
        feat_dim: int = 8,
        lambda_c: float = 1.0,
        centers_from: str = "parameter",
        seed: int = 0,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__(num_classes=int(num_classes), feat_dim=int(feat_dim), lambda_c=float(lambda_c),
                         centers_from=centers_from, seed=int(seed), reduction=reduction)
        self._init_classes(centers_from, num_classes, feat_dim, seed)

    def forward(
        self, features: torch.Tensor, labels: torch.Tensor, centers: torch.Tensor | None = None
    ) -> torch.Tensor:
        p = self._params
        return center_loss(features, labels, self._classes(features, centers), p["lambda_c"], p["reduction"])


class ArcFace(_ClassTensorLoss):
    """Module form of :func:`arcface`.

    ``weight_from="parameter"`` (default): ``weight`` is an ``nn.Parameter`` ``(num_classes,
    feat_dim)`` with standard-normal initial values from ``seed``; ``forward(features, labels)``.
    ``weight_from="input"``: ``forward(features, labels, weight)``.
    """

    name = "arcface"
    _what = "weight"

    def __init__(
        self,
        num_classes: int = 10,
        feat_dim: int = 8,
        s: float = 64.0,
        m: float = 0.5,
        easy_margin: bool = False,
        weight_from: str = "parameter",
        seed: int = 0,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__(num_classes=int(num_classes), feat_dim=int(feat_dim), s=float(s), m=float(m),
                         easy_margin=bool(easy_margin), weight_from=weight_from, seed=int(seed), reduction=reduction)
        self._init_classes(weight_from, num_classes, feat_dim, seed)

    def forward(self, features: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        p = self._params
        classes = self._classes(features, weight)
        return arcface(features, labels, classes, p["s"], p["m"], p["easy_margin"], p["reduction"])

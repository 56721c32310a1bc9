"""FCOS loss (Tian et al. 2019) over L feature levels, vectorised: positives by masking, no loops.

The seed notebook's semantics (``lossgraph/baselines/fcos.py``), per image ``b`` with ``P_b`` the
positive locations (``cnt_targets > -1``) and ``n_b = max(|P_b|, 1)``:

* ``cls_b = Σ_{locations, classes} FL(x, onehot(cls_targets))/n_b``: sigmoid focal loss (α, γ) over
  every location; class ids 1..C map to channels 0..C-1, 0 is background (all-zero one-hot);
* ``cnt_b = Σ_{P_b} BCE(centerness logit, cnt_target) / n_b``;
* ``reg_b = Σ_{P_b} L(reg_pred, reg_target) / n_b`` with ``L`` = ``-log IoU`` or ``1 - GIoU`` on
  ltrb distances (:func:`lossgraph.boxes.ltrb_iou_loss`);
* each term is the mean over the batch; ``total = cls + reg (+ cnt with add_centerness)``.

An image with no positives gives ``cnt = reg = 0`` and its focal sum over negatives; values at
negative locations never reach the loss or its gradient (they are replaced before the IoU).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from ._checks import InputError, check_choice
from ._functional import LossModule, as_labels, check_unit, to_acc
from ._levels import check_levels, level_names
from .boxes import ltrb_iou_loss
from .focal import bce_with_logits, sigmoid_focal

REG_LOSSES = ("giou", "iou")
OUTPUTS = ("cls", "cnt", "reg", "total")


def flatten_levels(levels: Sequence[torch.Tensor]) -> torch.Tensor:
    """``(B, K, h_l, w_l)`` for each level -> ``(B, Σ h_l w_l, K)``: level by level, row-major within one
    (the notebook's ``permute(0, 2, 3, 1).reshape(B, -1, K)`` per level, concatenated)."""
    return torch.cat([x.flatten(2).transpose(1, 2) for x in levels], dim=1)


def fcos(
    cls_logits: Sequence[torch.Tensor],
    cnt_logits: Sequence[torch.Tensor],
    reg_preds: Sequence[torch.Tensor],
    cls_targets: torch.Tensor,
    cnt_targets: torch.Tensor,
    reg_targets: torch.Tensor,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reg_loss: Literal["iou", "giou"] = "giou",
    add_centerness: bool = True,
) -> dict[str, torch.Tensor]:
    """FCOS classification, centerness and regression losses (module docstring for the formulas).

    Args:
        cls_logits: L tensors ``(B, C, h_l, w_l)``, class logits.
        cnt_logits: L tensors ``(B, 1, h_l, w_l)``, centerness logits.
        reg_preds: L tensors ``(B, 4, h_l, w_l)``, predicted ltrb distances (> 0).
        cls_targets: ``(B, N, 1)`` int class ids in ``[0, C]`` (0 = background), ``N = Σ h_l w_l``
            in level order, row-major within a level.
        cnt_targets: ``(B, N, 1)`` centerness in [0, 1] at positives, -1 at negatives.
        reg_targets: ``(B, N, 4)`` target ltrb distances (any value at negatives).
        alpha: focal weight of the positives (the notebook's 0.25).
        gamma: focal exponent (the notebook's 2).
        reg_loss: ``'giou'`` (the notebook's default) or ``'iou'`` (``-log IoU``).
        add_centerness: include ``cnt`` in ``total``.

    Returns ``{"cls", "cnt", "reg", "total"}`` scalars.
    """
    fn = "fcos"
    check_choice(fn, "reg_loss", reg_loss, REG_LOSSES)
    check_levels(fn, cls_logits, cnt_logits, reg_preds, cls_targets, cnt_targets, reg_targets)
    cls_targets = as_labels(fn, "cls_targets", cls_targets, cls_logits[0].shape[1] + 1, None, allow_float=True)
    check_unit(fn, "cnt_targets", cnt_targets, extra=-1.0)
    x = to_acc(flatten_levels(cls_logits))  # (B, N, C)
    c = x.shape[-1]
    onehot = (cls_targets == torch.arange(1, c + 1, device=x.device)).to(x.dtype)
    pos = (cnt_targets[..., 0] > -1).to(x.dtype)  # (B, N)
    num_pos = torch.clamp(pos.sum(1), min=1)
    cls = sigmoid_focal(x, onehot, alpha, gamma, "none").sum((1, 2)) / num_pos

    z = to_acc(flatten_levels(cnt_logits))[..., 0]
    t = cnt_targets[..., 0].to(z.dtype)
    cnt = (bce_with_logits(z, t) * pos).sum(1) / num_pos

    keep = pos[..., None] > 0
    ones = torch.ones_like(reg_targets, dtype=x.dtype)
    pred = torch.where(keep, to_acc(flatten_levels(reg_preds)), ones)  # negatives: a harmless unit box
    target = torch.where(keep, reg_targets.to(x.dtype), ones)
    reg = (ltrb_iou_loss(pred, target, reg_loss) * pos).sum(1) / num_pos

    cls, cnt, reg = cls.mean(), cnt.mean(), reg.mean()
    total = cls + reg + cnt if add_centerness else cls + reg
    return {"cls": cls, "cnt": cnt, "reg": reg, "total": total}


class FCOS(LossModule):
    """Module form of :func:`fcos` for ``levels`` feature levels.

    ``forward(cls_0, ..., cls_{L-1}, cnt_0, ..., cnt_{L-1}, reg_0, ..., reg_{L-1}, cls_targets,
    cnt_targets, reg_targets)``: every level a separate (named) graph input.
    """

    name = "fcos"

    def __init__(
        self,
        levels: int = 5,
        alpha: float = 0.25,
        gamma: float = 2.0,
        reg_loss: Literal["iou", "giou"] = "giou",
        add_centerness: bool = True,
    ) -> None:
        if int(levels) < 1:
            raise InputError(f"fcos: levels must be >= 1; got {levels}")
        check_choice("fcos", "reg_loss", reg_loss, REG_LOSSES)
        super().__init__(levels=int(levels), alpha=float(alpha), gamma=float(gamma), reg_loss=reg_loss,
                         add_centerness=bool(add_centerness))

    def input_names(self) -> list[str]:
        n = self._params["levels"]
        return [*level_names("cls", n), *level_names("cnt", n), *level_names("reg", n),
                "cls_targets", "cnt_targets", "reg_targets"]

    def forward(self, *inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        n = self._params["levels"]
        if len(inputs) != 3 * n + 3:
            raise InputError(f"fcos: takes {3 * n + 3} inputs for {n} levels ({', '.join(self.input_names())}); "
                             f"got {len(inputs)}")
        p = {k: v for k, v in self._params.items() if k != "levels"}
        cls_targets, cnt_targets, reg_targets = inputs[3 * n:]
        return fcos(inputs[:n], inputs[n:2 * n], inputs[2 * n:3 * n], cls_targets, cnt_targets, reg_targets, **p)

"""Feature-pyramid inputs (FCOS): level names and the shape/dtype checks shared by torch and reference.

Torch-free: it reads ``.shape`` and ``.dtype`` only, like :mod:`lossgraph._checks`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._checks import InputError, check_dtype, check_shapes, fmt_shape


def level_names(prefix: str, levels: int) -> list[str]:
    """``cls_0, cls_1, ...``: graph input names of one head's levels."""
    return [f"{prefix}_{k}" for k in range(levels)]


def locations_expr(levels: int) -> str:
    """``"H0*W0 + H1*W1 + ..."``: the number of locations N of ``levels`` levels."""
    return " + ".join(f"H{k}*W{k}" for k in range(levels))


def check_levels(
    fn: str,
    cls_logits: Sequence[Any],
    cnt_logits: Sequence[Any],
    reg_preds: Sequence[Any],
    cls_targets: Any,
    cnt_targets: Any,
    reg_targets: Any,
) -> None:
    """Level counts, dtypes, shapes ``(B, C, H_l, W_l)`` / ``(B, 1, ..)`` / ``(B, 4, ..)`` and targets
    ``(B, N, 1|4)`` with ``N = Σ H_l W_l``; ValueError/TypeError naming the input otherwise."""
    levels = len(cls_logits)
    if levels == 0 or len(cnt_logits) != levels or len(reg_preds) != levels:
        raise InputError(
            f"{fn}: cls, centerness and regression need the same number (>= 1) of levels; "
            f"got {len(cls_logits)}, {len(cnt_logits)} and {len(reg_preds)}"
        )
    named: list[tuple[str, Any, tuple[str | int, ...]]] = []
    for k in range(levels):
        h, w = f"H{k}", f"W{k}"
        named += [(f"cls_{k}", cls_logits[k], ("B", "C", h, w)), (f"cnt_{k}", cnt_logits[k], ("B", 1, h, w)),
                  (f"reg_{k}", reg_preds[k], ("B", 4, h, w))]
    named += [("cls_targets", cls_targets, ("B", "N", 1)), ("cnt_targets", cnt_targets, ("B", "N", 1)),
              ("reg_targets", reg_targets, ("B", "N", 4))]
    for name, x, _ in named:
        if name == "cls_targets":
            check_dtype(fn, name, x, "if", "an integer or whole-valued float tensor (class ids, 0 = background)")
        else:
            check_dtype(fn, name, x, "f", "a float tensor")
    dims = check_shapes(fn, named)
    # sizes stay symbolic under torch.export (no int()): the comparison becomes N's definition
    total = sum(x.shape[2] * x.shape[3] for x in cls_logits)
    if dims["N"] != total:
        raise InputError(
            f"{fn}: cls_targets must have shape (B, N, 1) with N = {locations_expr(levels)} = {total} "
            f"locations; got {fmt_shape(cls_targets.shape)}"
        )

"""Peers: the calls a user would pick instead of a lossgraph loss, from kornia, MONAI, torch and torchmetrics.

``PEERS`` maps a catalog name to its peers. Each peer builds a callable taking the entry's torch inputs
in catalog order (the tensors lossgraph's module gets) and returning the peer's value, so the bench times
both on the same inputs and compares value and gradient (:func:`compare`). ``same_as`` names our
parameters under which the definitions are meant to be equal; at other parameters a mismatch reads as
"definitions differ", not as a bug. A peer whose library is not installed is skipped with the reason.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Peer:
    """One library call equivalent to a catalog entry."""

    library: str  # the column title: "kornia", "monai", "torch", "torchmetrics"
    call: str  # what is called, for the report
    build: Callable[[Mapping[str, Any]], Callable[..., Any]]  # our params -> fn(*torch inputs) -> value
    #: our parameters under which the definitions are the same (None: no parameters make them equal)
    same_as: Mapping[str, Any] | None = field(default_factory=dict)

    def available(self) -> str:
        """"" when the library imports, else why not."""
        try:
            importlib.import_module(self.library)
        except ImportError as e:
            return f"{self.library} not installed ({e.name})"
        return ""


def _kornia_lovasz_softmax(p: Mapping[str, Any]) -> Callable[..., Any]:
    from kornia.losses import lovasz_softmax_loss

    return lambda probas, labels: lovasz_softmax_loss(probas, labels)


def _kornia_lovasz_hinge(p: Mapping[str, Any]) -> Callable[..., Any]:
    from kornia.losses import lovasz_hinge_loss

    return lambda logits, labels: lovasz_hinge_loss(logits.unsqueeze(1), labels)


def _kornia_dice(p: Mapping[str, Any]) -> Callable[..., Any]:
    from kornia.losses import dice_loss

    return lambda logits, labels: dice_loss(logits, labels, average="micro")


def _monai_dice(p: Mapping[str, Any]) -> Callable[..., Any]:
    from monai.losses import DiceLoss

    s = float(p.get("smooth", 1.0))
    loss = DiceLoss(softmax=True, to_onehot_y=True, batch=True, smooth_nr=s, smooth_dr=s)
    return lambda logits, labels: loss(logits, labels.unsqueeze(1))


def _torch_cross_entropy(p: Mapping[str, Any]) -> Callable[..., Any]:
    import torch.nn.functional as F

    ignore = p.get("ignore_index")
    ignore = -100 if ignore is None else ignore
    return lambda logits, labels: F.cross_entropy(logits, labels, ignore_index=ignore)


def _kornia_focal(p: Mapping[str, Any]) -> Callable[..., Any]:
    from kornia.losses import focal_loss

    gamma = float(p.get("gamma", 2.0))
    return lambda logits, labels: focal_loss(logits, labels, alpha=None, gamma=gamma, reduction="mean")


def _monai_focal(p: Mapping[str, Any]) -> Callable[..., Any]:
    from monai.losses import FocalLoss

    loss = FocalLoss(to_onehot_y=True, use_softmax=True, gamma=float(p.get("gamma", 2.0)))
    return lambda logits, labels: loss(logits, labels.unsqueeze(1))


def _kornia_sigmoid_focal(p: Mapping[str, Any]) -> Callable[..., Any]:
    from kornia.losses import binary_focal_loss_with_logits

    a, g = float(p.get("alpha", 0.25)), float(p.get("gamma", 2.0))
    return lambda logits, targets: binary_focal_loss_with_logits(logits, targets, alpha=a, gamma=g, reduction="mean")


def _monai_sigmoid_focal(p: Mapping[str, Any]) -> Callable[..., Any]:
    from monai.losses import FocalLoss

    loss = FocalLoss(use_softmax=False, alpha=float(p.get("alpha", 0.25)), gamma=float(p.get("gamma", 2.0)))
    return lambda logits, targets: loss(logits, targets)


def _torch_bce(p: Mapping[str, Any]) -> Callable[..., Any]:
    import torch.nn.functional as F

    return lambda logits, labels: F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))


def _torchmetrics_iou(p: Mapping[str, Any]) -> Callable[..., Any]:
    from torchmetrics.functional.classification import multiclass_jaccard_index

    def call(logits: Any, labels: Any) -> Any:  # lossgraph's IoU is in percent
        return 100.0 * multiclass_jaccard_index(logits, labels, logits.shape[1], average="none", validate_args=False)

    return call


def _torchmetrics_iou_binary(p: Mapping[str, Any]) -> Callable[..., Any]:
    from torchmetrics.functional.classification import binary_jaccard_index

    def call(logits: Any, labels: Any) -> Any:  # a threshold on logits: the scores as given, percent
        pred = (logits > float(p.get("threshold", 0.0))).to(labels.dtype)
        return 100.0 * binary_jaccard_index(pred, labels, validate_args=False)

    return call


#: catalog name -> its peers
PEERS: dict[str, tuple[Peer, ...]] = {
    "lovasz_softmax": (
        Peer("kornia", "kornia.losses.lovasz_softmax_loss", _kornia_lovasz_softmax,
             {"from_logits": True, "per_image": True, "classes": "all", "ignore_index": None}),
    ),
    "lovasz_hinge": (Peer("kornia", "kornia.losses.lovasz_hinge_loss", _kornia_lovasz_hinge, {"per_image": True}),),
    "dice": (
        Peer("kornia", "kornia.losses.dice_loss(average='micro')", _kornia_dice, None),
        Peer("monai", "monai.losses.DiceLoss(softmax, to_onehot_y, batch)", _monai_dice, {"per_class": True}),
    ),
    "cross_entropy": (Peer("torch", "torch.nn.functional.cross_entropy", _torch_cross_entropy, {"weight": None}),),
    "focal": (
        Peer("kornia", "kornia.losses.focal_loss(alpha=None)", _kornia_focal, {"alpha": None, "ignore_index": None}),
        Peer("monai", "monai.losses.FocalLoss(use_softmax, to_onehot_y)", _monai_focal, None),
    ),
    "sigmoid_focal": (
        Peer("kornia", "kornia.losses.binary_focal_loss_with_logits", _kornia_sigmoid_focal, {"reduction": "mean"}),
        Peer("monai", "monai.losses.FocalLoss(use_softmax=False)", _monai_sigmoid_focal, {"reduction": "mean"}),
    ),
    "binary_xloss": (
        Peer("torch", "torch.nn.functional.binary_cross_entropy_with_logits", _torch_bce, {"ignore_index": None}),
    ),
    "iou": (
        Peer("torchmetrics", "torchmetrics multiclass_jaccard_index(average='none')", _torchmetrics_iou,
             {"per_image": False, "ignore_index": None}),
    ),
    "iou_binary": (
        Peer("torchmetrics", "torchmetrics binary_jaccard_index", _torchmetrics_iou_binary, {"per_image": False}),
    ),
}


def peers_of(name: str) -> tuple[Peer, ...]:
    """The peers of catalog entry ``name`` (none: an empty tuple)."""
    return PEERS.get(name, ())


def compare(ours: Any, theirs: Any, rtol: float = 1e-4) -> str:
    """How a peer's output ``(value, gradients)`` compares with ours, as one phrase for the report.

    Each is what a bench call returns: a value (tensor) or ``(outputs, gradients)`` in train mode.
    """
    import torch

    def flat(out: Any) -> list[Any]:
        if isinstance(out, tuple):
            outs, grads = out
            vals = list(outs.values()) if isinstance(outs, Mapping) else [outs]
            return [v.detach().double() for v in vals] + [g.double() for g in grads]
        if isinstance(out, Mapping):
            return [v.detach().double() for v in out.values()]
        return [torch.as_tensor(out).detach().double()]

    a, b = flat(ours), flat(theirs)
    if len(a) != len(b) or any(x.shape != y.shape for x, y in zip(a, b)):
        return "definitions differ (outputs of other shapes)"
    errs = [float((x - y).abs().max() / max(float(y.abs().max()), 1e-30)) for x, y in zip(a, b)]
    what = "value and gradient" if len(a) > 1 else "value"
    if max(errs) <= rtol:
        return f"{what} agree ({max(errs):.0e})"
    return f"definitions differ ({what}: relative difference {max(errs):.1e})"

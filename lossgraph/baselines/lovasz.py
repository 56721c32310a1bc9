"""Lovász losses as the authors' reference code computes them: Python loops over images and classes.

Semantics of Berman's ``lovasz_losses.py`` (``lovasz_hinge``, ``lovasz_softmax`` with
``classes``/``per_image``/``ignore``), written out here: ignored pixels are removed by boolean
indexing, every image and class is sorted separately, and ``lovasz_grad`` takes differences of
``1 - I/U``. Two deliberate deviations, both where the original breaks:

* an all-ignored group returns an empty tensor there (``probas * 0.`` of shape (0, C)), which then
  poisons the mean over images; here it contributes 0, as lossgraph documents;
* with ``C == 1`` and ``classes='present'``/``'all'`` the original raises (``len('present') > 1``);
  here the channel is the probability of label 1, as lossgraph documents.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def lovasz_grad(gt_sorted: torch.Tensor) -> torch.Tensor:
    """Gradient of the Lovász extension w.r.t. sorted errors (Alg. 1): differences of 1 - I/U."""
    gts = gt_sorted.sum()
    intersection = gts - gt_sorted.cumsum(0)
    union = gts + (1 - gt_sorted).cumsum(0)
    jaccard = 1.0 - intersection / union
    if gt_sorted.numel() > 1:
        jaccard[1:] = jaccard[1:] - jaccard[:-1]
    return jaccard


def _mean(values: list[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    return torch.stack(values).mean() if values else like.sum() * 0.0


def lovasz_hinge_flat(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if labels.numel() == 0:
        return logits.sum() * 0.0
    signs = 2.0 * labels.to(logits.dtype) - 1.0
    errors = 1.0 - logits * signs
    errors_sorted, perm = torch.sort(errors, dim=0, descending=True)
    return torch.dot(torch.relu(errors_sorted), lovasz_grad(labels[perm].to(logits.dtype)))


def lovasz_hinge(logits: torch.Tensor, labels: torch.Tensor, per_image: bool = True, ignore_index: int | None = None):
    """logits (B, H, W), labels (B, H, W) in {0, 1}: per-image loop, ignored pixels removed."""

    def flat(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x, y = x.reshape(-1), y.reshape(-1)
        if ignore_index is not None:
            keep = y != ignore_index
            x, y = x[keep], y[keep]
        return lovasz_hinge_flat(x, y)

    if per_image:
        return _mean([flat(x, y) for x, y in zip(logits, labels)], logits)
    return flat(logits, labels)


def lovasz_softmax_flat(probas: torch.Tensor, labels: torch.Tensor, classes: str | Sequence[int] = "present"):
    """probas (P, C), labels (P,): mean over the classes taken of the Lovász extension."""
    if probas.numel() == 0:
        return probas.sum() * 0.0
    num_classes = probas.shape[1]
    losses = []
    class_to_sum = list(range(num_classes)) if classes in ("all", "present") else list(classes)
    for c in class_to_sum:
        if num_classes == 1:
            fg = (labels == (1 if isinstance(classes, str) else c)).to(probas.dtype)
            class_pred = probas[:, 0]
        else:
            fg = (labels == c).to(probas.dtype)
            class_pred = probas[:, c]
        if classes == "present" and fg.sum() == 0:
            continue
        errors = (fg - class_pred).abs()
        errors_sorted, perm = torch.sort(errors, 0, descending=True)
        losses.append(torch.dot(errors_sorted, lovasz_grad(fg[perm])))
    return _mean(losses, probas)


def lovasz_softmax(
    probas: torch.Tensor,
    labels: torch.Tensor,
    classes: str | Sequence[int] = "present",
    per_image: bool = False,
    ignore_index: int | None = None,
    from_logits: bool = False,
):
    """probas (B, C, H, W), labels (B, H, W): loops over images (per_image) and classes."""
    if probas.dim() == 3:
        probas = probas.unsqueeze(1)
    if from_logits:
        probas = torch.sigmoid(probas) if probas.shape[1] == 1 else probas.softmax(1)

    def flat(p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        c = p.shape[1]
        p = p.permute(0, 2, 3, 1).reshape(-1, c)
        y = y.reshape(-1)
        if ignore_index is not None:
            keep = y != ignore_index
            p, y = p[keep], y[keep]
        return lovasz_softmax_flat(p, y, classes)

    if per_image:
        return _mean([flat(p[None], y[None]) for p, y in zip(probas, labels)], probas)
    return flat(probas, labels)


#: catalog name -> source formulation (see ``lossgraph.baselines``)
BASELINES = {"lovasz_hinge": lovasz_hinge, "lovasz_softmax": lovasz_softmax}

"""The FCOS notebook's loss as written there: per-image Python loops with boolean indexing.

Semantics of the seed notebook's ``compute_cls_loss`` / ``compute_cnt_loss`` / ``compute_reg_loss``
and ``LOSS.forward``: levels flattened with ``permute(0, 2, 3, 1).reshape(B, -1, K)``; positives are
``cnt_targets > -1``; per image the focal loss summed over every location and class (class ids
1..C one-hot, 0 background), BCE-with-logits of centerness summed over positives, and the IoU
(``-log IoU``) or GIoU loss summed over positives, each divided by ``max(num_pos, 1)``; means over
the batch; ``total = cls + cnt + reg`` with ``add_centerness``, else ``cls + reg + 0 * cnt``.
``giou_loss`` on ltrb is referenced but missing in the notebook: it is written here in the same style.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def _flatten(preds: Sequence[torch.Tensor], channels: int) -> torch.Tensor:
    batch = preds[0].shape[0]
    return torch.cat([p.permute(0, 2, 3, 1).reshape(batch, -1, channels) for p in preds], dim=1)


def focal_loss_from_logits(preds, targets, gamma=2.0, alpha=0.25):
    preds = preds.sigmoid()
    pt = preds * targets + (1.0 - preds) * (1.0 - targets)
    w = alpha * targets + (1.0 - alpha) * (1.0 - targets)
    loss = -w * torch.pow((1.0 - pt), gamma) * pt.log()
    return loss.sum()


def iou_loss(preds, targets):
    lt = torch.min(preds[:, :2], targets[:, :2])
    rb = torch.min(preds[:, 2:], targets[:, 2:])
    wh = (rb + lt).clamp(min=0)
    overlap = wh[:, 0] * wh[:, 1]
    area1 = (preds[:, 2] + preds[:, 0]) * (preds[:, 3] + preds[:, 1])
    area2 = (targets[:, 2] + targets[:, 0]) * (targets[:, 3] + targets[:, 1])
    iou = overlap / (area1 + area2 - overlap)
    loss = -iou.clamp(min=1e-6).log()
    return loss.sum()


def giou_loss(preds, targets):
    lt_min = torch.min(preds[:, :2], targets[:, :2])
    rb_min = torch.min(preds[:, 2:], targets[:, 2:])
    wh_min = (rb_min + lt_min).clamp(min=0)
    overlap = wh_min[:, 0] * wh_min[:, 1]
    area1 = (preds[:, 2] + preds[:, 0]) * (preds[:, 3] + preds[:, 1])
    area2 = (targets[:, 2] + targets[:, 0]) * (targets[:, 3] + targets[:, 1])
    union = area1 + area2 - overlap
    iou = overlap / union
    lt_max = torch.max(preds[:, :2], targets[:, :2])
    rb_max = torch.max(preds[:, 2:], targets[:, 2:])
    wh_max = (rb_max + lt_max).clamp(0)
    g_area = wh_max[:, 0] * wh_max[:, 1]
    giou = iou - (g_area - union) / g_area.clamp(1e-10)
    return (1.0 - giou).sum()


def compute_cls_loss(preds, targets, mask, alpha=0.25, gamma=2.0):
    batch_size = targets.shape[0]
    class_num = preds[0].shape[1]
    num_pos = torch.sum(mask.unsqueeze(-1), dim=[1, 2]).clamp_(min=1).float()
    preds = _flatten(preds, class_num)
    loss = []
    for b in range(batch_size):
        target_pos = (torch.arange(1, class_num + 1)[None, :] == targets[b]).to(preds.dtype)
        loss.append(focal_loss_from_logits(preds[b], target_pos, gamma, alpha).view(1))
    return torch.cat(loss, dim=0) / num_pos


def compute_cnt_loss(preds, targets, mask):
    batch_size = targets.shape[0]
    mask = mask.unsqueeze(-1)
    num_pos = torch.sum(mask, dim=[1, 2]).clamp_(min=1).float()
    preds = _flatten(preds, targets.shape[-1])
    loss = []
    for b in range(batch_size):
        pred_pos = preds[b][mask[b]]
        target_pos = targets[b][mask[b]]
        loss.append(F.binary_cross_entropy_with_logits(pred_pos, target_pos, reduction="sum").view(1))
    return torch.cat(loss, dim=0) / num_pos


def compute_reg_loss(preds, targets, mask, mode="giou"):
    batch_size = targets.shape[0]
    num_pos = torch.sum(mask, dim=1).clamp_(min=1).float()
    preds = _flatten(preds, targets.shape[-1])
    loss = []
    for b in range(batch_size):
        pred_pos = preds[b][mask[b]]
        target_pos = targets[b][mask[b]]
        loss.append((iou_loss if mode == "iou" else giou_loss)(pred_pos, target_pos).view(1))
    return torch.cat(loss, dim=0) / num_pos


def fcos_loss(cls_logits, cnt_logits, reg_preds, cls_targets, cnt_targets, reg_targets,
              alpha=0.25, gamma=2.0, reg_loss="giou", add_centerness=True) -> dict[str, torch.Tensor]:
    """``LOSS.forward`` of the notebook: ``{"cls", "cnt", "reg", "total"}``."""
    mask_pos = (cnt_targets > -1).squeeze(dim=-1)
    cls = compute_cls_loss(cls_logits, cls_targets, mask_pos, alpha, gamma).mean()
    cnt = compute_cnt_loss(cnt_logits, cnt_targets, mask_pos).mean()
    reg = compute_reg_loss(reg_preds, reg_targets, mask_pos, reg_loss).mean()
    total = cls + cnt + reg if add_centerness else cls + reg + cnt * 0.0
    return {"cls": cls, "cnt": cnt, "reg": reg, "total": total}

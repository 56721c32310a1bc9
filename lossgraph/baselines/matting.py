"""Matting losses as the source documents compute them (``LossFunction`` / ``LossFunction2``).

Written from their description: every masked term is ``F.<loss>(pred * mask, target * mask)`` (a mean
over all B·H·W pixels) times ``B · 512² / Σ mask``; the Sobel gradient and Laplacian pyramid use
``F.conv2d``; ``LossFunction2`` loops over the samples of the batch, sending a sample to the
segmentation terms when ``all(t == 0) or all(t == 1)`` (the code; its comment says "only 0 and 1",
which is ``route="binary"``) and to the matting terms otherwise, and adds up the per-sample values.
Deliberate deviation: the source reports ``known_smooth_l1`` under the key ``known_l1_loss``; here
it has its own key. An empty mask divides by zero there (inf/NaN); lossgraph gives 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

SOURCE_AREA = 262144  # 512 * 512, hard-coded in the source


def _scale(mask: torch.Tensor, area: float | None = SOURCE_AREA) -> torch.Tensor:
    """``B · area / Σ mask``: the source's normaliser; ``area=None`` puts ``H·W`` in place of its 512²."""
    area = mask.shape[-2] * mask.shape[-1] if area is None else area
    return mask.shape[0] * area / torch.sum(mask)


def unknown_l1_loss(pred, target, mask, area=SOURCE_AREA):
    return F.l1_loss(pred * mask, target * mask) * _scale(mask, area)


def known_l1_loss(pred, target, mask, area=SOURCE_AREA):
    known = 1 - mask
    return F.l1_loss(pred * known, target * known) * _scale(known, area)


def known_smooth_l1_loss(pred, target, mask, area=SOURCE_AREA):
    known = 1 - mask
    return F.smooth_l1_loss(pred * known, target * known) * _scale(known, area)


def smooth_l1_loss(pred, target, mask, area=SOURCE_AREA):
    return F.smooth_l1_loss(pred * mask, target * mask) * _scale(mask, area)


def bce_loss(pred, target, mask, area=SOURCE_AREA):
    return F.binary_cross_entropy(pred * mask, target * mask) * _scale(mask, area)


def sigmoid_focal_loss(pred, target, mask, alpha: float = 0.25, gamma: float = 2.0, area=SOURCE_AREA):
    """torchvision's focal formula with the probabilities ``pred`` in place of ``sigmoid(logits)``."""
    p, t = pred * mask, target * mask
    ce = F.binary_cross_entropy(p, t, reduction="none")
    p_t = p * t + (1 - p) * (1 - t)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * t + (1 - alpha) * (1 - t)) * loss
    return loss.mean() * _scale(mask, area)


def gradient_penalty(pred, target, mask, area=SOURCE_AREA):
    sobel_x = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=pred.dtype).view(1, 1, 3, 3)
    sobel_y = sobel_x.transpose(2, 3)
    pgx, pgy = F.conv2d(pred, sobel_x, padding=1), F.conv2d(pred, sobel_y, padding=1)
    tgx, tgy = F.conv2d(target, sobel_x, padding=1), F.conv2d(target, sobel_y, padding=1)
    loss = (
        F.l1_loss(pgx * mask, tgx * mask)
        + F.l1_loss(pgy * mask, tgy * mask)
        + 0.01 * torch.mean(torch.abs(pgx * mask))
        + 0.01 * torch.mean(torch.abs(pgy * mask))
    )
    return loss * _scale(mask, area)


def gauss_kernel(dtype=torch.float64) -> torch.Tensor:
    k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], dtype=dtype)
    return (k[:, None] * k[None, :] / 256.0).view(1, 1, 5, 5)


def conv_gauss(img, kernel):
    return F.conv2d(F.pad(img, (2, 2, 2, 2), mode="reflect"), kernel, groups=img.shape[1])


def crop_to_even_size(img):
    h, w = img.shape[2:]
    return img[:, :, : h - h % 2, : w - w % 2]


def upsample(img, kernel):
    n, c, h, w = img.shape
    cc = torch.cat([img, torch.zeros(n, c, h, w, dtype=img.dtype)], dim=3).view(n, c, h * 2, w)
    cc = cc.permute(0, 1, 3, 2)
    cc = torch.cat([cc, torch.zeros(n, c, w, h * 2, dtype=img.dtype)], dim=3).view(n, c, w * 2, h * 2)
    return conv_gauss(cc.permute(0, 1, 3, 2), 4 * kernel)


def lap_pyramid(img, kernel, max_levels: int = 5):
    current, pyr = img, []
    for _ in range(max_levels):
        current = crop_to_even_size(current)
        down = conv_gauss(current, kernel)[:, :, ::2, ::2]
        pyr.append(current - upsample(down, kernel))
        current = down
    return pyr


def laplacian_loss(pred, target, max_levels: int = 5):
    kernel = gauss_kernel(pred.dtype)
    pp, pt = lap_pyramid(pred, kernel, max_levels), lap_pyramid(target, kernel, max_levels)
    return sum((2**i) * F.l1_loss(a, b) for i, (a, b) in enumerate(zip(pp, pt))) / len(pp)


#: the source's loss names (without ``_loss``) -> its masked functions; ``laplacian`` takes no mask
LOSSES: dict[str, Callable] = {
    "unknown_l1": unknown_l1_loss,
    "known_l1": known_l1_loss,
    "known_smooth_l1": known_smooth_l1_loss,
    "smooth_l1": smooth_l1_loss,
    "bce": bce_loss,
    "sigmoid_focal": sigmoid_focal_loss,
    "gradient_penalty": gradient_penalty,
    "laplacian": lambda p, t, m, area=SOURCE_AREA, levels=5: laplacian_loss(p, t, levels),
}


def _term(k: str, pred, target, mask, area, levels) -> torch.Tensor:
    return LOSSES[k](pred, target, mask, area=area, **({"levels": levels} if k == "laplacian" else {}))


def loss_function(
    pred, target, mask, losses: Sequence[str], area=SOURCE_AREA, levels: int = 5
) -> dict[str, torch.Tensor]:
    """``LossFunction``: each named loss on the whole batch."""
    return {k: _term(k, pred, target, mask, area, levels) for k in losses}


def loss_function2(pred, target, mask, seg: Sequence[str], matting: Sequence[str], route: str = "constant",
                   area=SOURCE_AREA, levels: int = 5):
    """``LossFunction2``: a loop over samples; ``route="constant"`` is the source's test."""
    out = {k: torch.zeros((), dtype=pred.dtype) for k in dict.fromkeys([*seg, *matting])}
    for i in range(pred.shape[0]):
        p, t, m = pred[i : i + 1], target[i : i + 1], mask[i : i + 1]
        if route == "constant":
            is_seg = bool(torch.all(t == 0) or torch.all(t == 1))
        else:
            is_seg = bool(torch.all((t == 0) | (t == 1)))
        for k in seg if is_seg else matting:
            out[k] = out[k] + _term(k, p, t, m, area, levels)
    return out


#: catalog name -> source formulation, called like the functional form (``area``: see ``_scale``)
BASELINES: dict[str, Callable] = {
    "unknown_l1": unknown_l1_loss,
    "known_l1": known_l1_loss,
    "known_smooth_l1": known_smooth_l1_loss,
    "smooth_l1": smooth_l1_loss,
    "matting_bce": bce_loss,
    "matting_focal": sigmoid_focal_loss,
    "gradient_penalty": gradient_penalty,
    "laplacian": lambda pred, target, levels=5: laplacian_loss(pred, target, levels),
    "matting_set": loss_function,
    "seg_matting_set": loss_function2,
}

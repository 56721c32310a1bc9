"""Conventions users compare against: kornia's ``lovasz_softmax_loss`` is
``lovasz_softmax(from_logits=True, per_image=True, classes="all")`` (value and gradient).

kornia is not a dependency: its published formula is written out below. smp's Dice defaults are
tested in ``test_dice.py`` (``dice(per_class=True, smooth=0)``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lossgraph as lg
from lossgraph import reference as ref

F = lg.functional


def kornia_lovasz_softmax_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """kornia.losses.lovasz_softmax_loss (kornia 0.7), without its input checks."""
    pred_flatten = pred.reshape(pred.shape[0], pred.shape[1], -1)
    target_flatten = target.reshape(target.shape[0], -1)
    b, c, n = pred_flatten.shape
    pred_soft = pred_flatten.softmax(1)
    foreground = torch.nn.functional.one_hot(target_flatten, c).permute(0, 2, 1).to(pred.dtype)
    errors = (pred_soft - foreground).abs()
    errors_sorted, permutations = torch.sort(errors, dim=2, descending=True)
    batch_index = torch.arange(b).unsqueeze(1).unsqueeze(2).expand(b, c, n)
    class_index = torch.arange(c).unsqueeze(0).unsqueeze(2).expand(b, c, n)
    target_sorted = foreground[batch_index, class_index, permutations]
    target_sorted_sum = target_sorted.sum(2, keepdim=True)
    intersection = target_sorted_sum - target_sorted.cumsum(2)
    union = target_sorted_sum + (1.0 - target_sorted).cumsum(2)
    gradient = 1.0 - intersection / union
    if n > 1:
        gradient[..., 1:] = gradient[..., 1:] - gradient[..., :-1]
    loss_per_class = (errors_sorted * gradient).sum(2).mean(0)
    return loss_per_class.mean()


@pytest.mark.parametrize("shape", [(2, 4, 5, 6), (3, 3, 1, 7), (1, 5, 4, 4)])
def test_kornia_lovasz_softmax_equals_per_image_all_classes(shape):
    rng = np.random.default_rng(sum(shape))
    x = torch.tensor(rng.standard_normal(shape) * 2, requires_grad=True)
    y = torch.tensor(rng.integers(0, shape[1] - 1, size=(shape[0], *shape[2:])))  # the last class absent
    want = kornia_lovasz_softmax_loss(x, y)
    (g_want,) = torch.autograd.grad(want, x)
    kw = dict(from_logits=True, per_image=True, classes="all")
    got = F.lovasz_softmax(x, y, **kw)
    (g_got,) = torch.autograd.grad(got, x)
    assert got.item() == pytest.approx(want.item(), rel=1e-12)
    np.testing.assert_allclose(g_got.numpy(), g_want.numpy(), rtol=1e-9, atol=1e-14)
    value, g_ref = ref.lovasz_softmax(x.detach().numpy(), y.numpy(), grad=True, **kw)
    assert value == pytest.approx(want.item(), rel=1e-12)
    np.testing.assert_allclose(g_ref, g_want.numpy(), rtol=1e-9, atol=1e-14)
    # the defaults (Berman's: one group, present classes) are a different loss here
    other = F.lovasz_softmax(x, y, from_logits=True).item()
    assert abs(other - want.item()) > 1e-3

"""Helpers of the anchor tests (``test_anchors_*.py``): seeded inputs and value + gradient checks."""

from __future__ import annotations

import numpy as np
import torch


def grad(value: torch.Tensor, x: torch.Tensor) -> np.ndarray:
    """``d value / d x`` (the graph is kept for a second call)."""
    return torch.autograd.grad(value, x, retain_graph=True)[0].numpy()


def assert_same(got: torch.Tensor, want: torch.Tensor, x: torch.Tensor, rtol: float = 1e-12) -> None:
    """Values equal, and the gradients of their sums with respect to ``x``.

    Values: ``rtol``, with ``atol = rtol · max |want|`` (tiny elements of a float32 ``'none'`` map
    carry float32 rounding of the large ones); gradients: ``max(rtol, 1e-9)`` of ``max |grad|``.
    """
    w = want.detach().numpy()
    np.testing.assert_allclose(got.detach().numpy(), w, rtol=rtol, atol=rtol * float(np.abs(w).max(initial=1e-30)))
    g_got, g_want = grad(got.sum(), x), grad(want.sum(), x)
    scale = max(float(np.abs(g_want).max()), 1e-30)
    np.testing.assert_allclose(g_got, g_want, rtol=max(rtol, 1e-9), atol=max(rtol, 1e-9) * scale)


def seg_inputs(
    shape: tuple[int, int, int, int],
    seed: int,
    ignore: int | None = None,
    classes: int | None = None,
    dtype: torch.dtype = torch.float64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded logits ``(B, C, H, W)`` (requiring grad) and int64 labels ``(B, H, W)`` in
    ``[0, classes or C)``; with ``ignore``, about a quarter of the pixels ignored, never a whole image."""
    rng = np.random.default_rng(seed)
    b, c, h, w = shape
    x = torch.tensor(rng.standard_normal(shape) * 2, dtype=dtype, requires_grad=True)
    y = rng.integers(0, c if classes is None else classes, size=(b, h, w))
    if ignore is not None:
        y[rng.random(y.shape) < 0.25] = ignore
        y.reshape(b, -1)[:, 0] = 0
    return x, torch.tensor(y)

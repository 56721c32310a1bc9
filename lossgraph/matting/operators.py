"""Image operators of the matting losses: Sobel gradients and the Laplacian pyramid, on ``(B, C, H, W)``.

Export-friendly: Sobel responses are sums of shifted slices of a zero-padded image; each pyramid
level is a product with small per-axis operator matrices (crop, reflect pad, blur, ``[::2]``, zero
insertion) built from ``arange`` comparisons, so sizes stay symbolic (a graph exported at 64×64 runs
at any size >= 64) and the gradient is plain MatMul.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

BINOMIAL = (1.0, 4.0, 6.0, 4.0, 1.0)  # / 16 per axis: the 5×5 kernel [1,4,6,4,1]ᵀ[1,4,6,4,1] / 256


def laplacian_min_size(levels: int) -> int:
    """Smallest H and W a ``levels``-level pyramid accepts: the even-cropped size at the last level
    must exceed the reflect padding of 2, so it is at least 4 there, ``2^(levels + 1)`` at the top."""
    return 2 ** (int(levels) + 1)


def _shift_sum(x: torch.Tensor, dim: int, weights: Sequence[float], n) -> torch.Tensor:
    """``Σ_k w_k x[k : k + n]`` along ``dim`` (x already padded)."""
    out: torch.Tensor | None = None
    for k, w in enumerate(weights):
        if w == 0:
            continue
        term = x.narrow(dim, k, n) * w
        out = term if out is None else out + term
    assert out is not None  # weights not all 0
    return out


def _zero_pad1(x: torch.Tensor, dim: int) -> torch.Tensor:
    """One zero on each side of ``dim``, by concatenation: ``F.pad``'s backward in a gradient graph is
    a Pad with negative pads (a crop), which onnx's reference evaluator rejects; Concat's is Slice."""
    zero = torch.zeros_like(x.narrow(dim, 0, 1))
    return torch.cat([zero, x, zero], dim)


def sobel(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sobel responses ``(gx, gy)`` of ``(B, C, H, W)`` with zero padding 1 (cross-correlation with
    ``[[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]`` and its transpose, like ``F.conv2d(x, k, padding=1)``)."""
    h, w = x.shape[-2], x.shape[-1]
    xp = _zero_pad1(_zero_pad1(x, -1), -2)
    dx = _shift_sum(xp, -1, (-1.0, 0.0, 1.0), w)  # (.., H + 2, W)
    dy = _shift_sum(xp, -2, (-1.0, 0.0, 1.0), h)  # (.., H, W + 2)
    return _shift_sum(dx, -2, (1.0, 2.0, 1.0), h), _shift_sum(dy, -1, (1.0, 2.0, 1.0), w)


def _reflect(q: torch.Tensor, n) -> torch.Tensor:
    """Reflect-pad index map onto ``[0, n)`` (``-1 -> 1``, ``n -> n - 2``; padding 2 needs ``n >= 3``)."""
    return torch.where(q < 0, -q, torch.where(q > n - 1, 2 * (n - 1) - q, q))


def _band(rows: torch.Tensor, width, gain: float, dtype: torch.dtype) -> torch.Tensor:
    """``T[r, q] = gain·w[q - rows[r]] / 16`` for ``0 <= q - rows[r] < 5``, else 0 (binomial ``w``):
    row ``r`` blurs a reflect-padded signal at position ``rows[r]``."""
    k = torch.arange(width)[None, :] - rows[:, None]
    out: torch.Tensor | None = None
    for j, w in enumerate(BINOMIAL):
        term = (k == j).to(dtype) * (gain * w / 16.0)
        out = term if out is None else out + term
    assert out is not None  # weights not all 0
    return out


def _level_operators(s, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Operators ``(C, D, P)`` for an axis of length ``s``, each applied as ``M @ x`` along it.

    ``C`` (e × s) crops to the even length ``e = 2·(s // 2)``; ``D = T_down·R·C`` (s//2 × s) pads by
    reflection (``R``, (e+4) × e), blurs and keeps every second entry; ``P = T_up·R·Z·D`` (e × s),
    ``Z`` (e × s//2) being zero insertion ×2 and ``T_up`` the blur with gain 2 (the 5×5 kernel
    times 4 over both axes). Built from ``arange`` comparisons, so sizes stay symbolic and nothing is
    sliced (slicing to ``2·(s // 2)`` makes the exporter specialise s).
    """
    half = s // 2
    e = 2 * half
    even, halves = torch.arange(e), torch.arange(half)
    crop = (even[:, None] == torch.arange(s)[None, :]).to(dtype)
    pad = (_reflect(torch.arange(e + 4) - 2, e)[:, None] == even[None, :]).to(dtype)
    insert = (even[:, None] == 2 * halves[None, :]).to(dtype)
    down = _band(2 * halves, e + 4, 1.0, dtype) @ (pad @ crop)
    up = _band(even, e + 4, 2.0, dtype) @ (pad @ insert)
    return crop, down, up @ down


def _apply(x: torch.Tensor, rows_op: torch.Tensor, cols_op: torch.Tensor) -> torch.Tensor:
    """``rows_op @ x @ cols_opᵀ`` over the last two axes."""
    return torch.matmul(torch.matmul(rows_op, x), cols_op.mT.contiguous())


def laplacian_pyramid(x: torch.Tensor, levels: int = 5) -> list[torch.Tensor]:
    """Band-pass levels ``[L_0, ..., L_{levels-1}]`` of ``(..., H, W)`` and the low-pass residual.

    At each level the image ``x_i`` is cropped to even size, ``down`` = blur then ``[::2, ::2]``,
    ``L_i = crop(x_i) - up(down)`` with ``up`` = zero insertion ×2 then the blur with the kernel ×4,
    and ``x_{i+1} = down``. Reconstruct by ``crop(x_i) = L_i + up(x_{i+1})``. Every step is a product
    with small per-axis operator matrices (:func:`_level_operators`).
    """
    out = []
    cur = x
    for _ in range(int(levels)):
        ch, dh, ph = _level_operators(cur.shape[-2], cur.dtype)
        cw, dw, pw = _level_operators(cur.shape[-1], cur.dtype)
        out.append(_apply(cur, ch, cw) - _apply(cur, ph, pw))
        cur = _apply(cur, dh, dw)
    out.append(cur)
    return out

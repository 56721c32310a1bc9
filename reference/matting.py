"""Reference matting losses, float64, with analytic gradients (Numba kernels for the pyramid).

Every masked term is written as per-image parts ``(num_b, den_b, dnum_b/dpred)``: the batch loss is
``scale·Σnum / Σden`` and the per-image loss ``scale·num_b / den_b`` (0 when the denominator is 0),
``scale = area / (H·W)`` (1 for ``area=None``). The Laplacian has ``den_b = 1``, so the batch value is
the mean of the per-image values. Gradients are those of the value with respect to ``pred``.
"""

from __future__ import annotations

from typing import Sequence

import numba
import numpy as np

from lossgraph._checks import check_choice, check_min_size, check_shapes

from ._util import as_f64

MATTE = ("B", 1, "H", "W")
BINOMIAL = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0
SOBEL_X = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
ROUTES = ("binary", "constant")
TERM_KEYS = ("unknown_l1", "known_l1", "known_smooth_l1", "smooth_l1", "bce", "sigmoid_focal",
             "gradient_penalty", "laplacian")


def _inputs(fn, pred, target, mask=None):
    p = as_f64(fn, "pred", pred)
    t = as_f64(fn, "target", target)
    named = [("pred", p, MATTE), ("target", t, MATTE)]
    m = None
    if mask is not None:
        m = as_f64(fn, "mask", mask)
        named.append(("mask", m, MATTE))
    check_shapes(fn, named)
    return p, t, m


def _scale(p: np.ndarray, area) -> float:
    return 1.0 if area is None else float(area) / (p.shape[-2] * p.shape[-1])


def _per_image(x: np.ndarray) -> np.ndarray:
    return x.reshape(x.shape[0], -1).sum(1)


# --- elementwise losses and their derivatives in p -------------------------------------------------


def _l1(p, t):
    return np.abs(p - t), np.sign(p - t)


def _smooth_l1(p, t):
    d = p - t
    small = np.abs(d) < 1.0
    return np.where(small, 0.5 * d * d, np.abs(d) - 0.5), np.where(small, d, np.sign(d))


def _log_clamped(p):
    """``max(log p, -100)`` and its derivative ``1/p`` (0 where clamped)."""
    with np.errstate(divide="ignore"):
        lp = np.log(p)
    ok = lp >= -100.0
    return np.where(ok, lp, -100.0), np.where(ok, 1.0 / np.where(ok, p, 1.0), 0.0)


def _bce(p, t):
    lp, dlp = _log_clamped(p)
    lq, dlq = _log_clamped(1 - p)
    return -(t * lp + (1 - t) * lq), -(t * dlp - (1 - t) * dlq)


def _focal(alpha, gamma):
    def f(p, t):
        b, db = _bce(p, t)
        q = 1 - (p * t + (1 - p) * (1 - t))  # 1 - p_t, dq/dp = 1 - 2t
        a = alpha * t + (1 - alpha) * (1 - t) if alpha >= 0 else np.ones_like(p)
        pos = q > 0
        safe = np.where(pos, q, 1.0)
        qg = np.where(pos, safe**gamma, 0.0**gamma)
        qg1 = np.where(pos, gamma * safe ** (gamma - 1), 0.0)  # the limit: q^γ·BCE ~ q^(1+γ) near q = 0
        return a * qg * b, a * (qg1 * (1 - 2 * t) * b + qg * db)

    return f


def _region_parts(fn, pred, target, mask, elementwise, known):
    p, t, m = _inputs(fn, pred, target, mask)
    r = 1 - m if known else m
    value, deriv = elementwise(p, t)
    return p, _per_image(value * r), _per_image(r), deriv * r


# --- Sobel -----------------------------------------------------------------------------------------


def _correlate3(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """3×3 cross-correlation over the last two axes with zero padding 1 (``F.conv2d(x, k, padding=1)``)."""
    h, w = x.shape[-2:]
    xp = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(1, 1), (1, 1)])
    out = np.zeros_like(x)
    for a in range(3):
        for b in range(3):
            if k[a, b] != 0:
                out += k[a, b] * xp[..., a : a + h, b : b + w]
    return out


def _gradient_parts(pred, target, mask):
    p, t, m = _inputs("gradient_penalty", pred, target, mask)
    kx, ky = SOBEL_X, SOBEL_X.T
    pgx, pgy, tgx, tgy = _correlate3(p, kx), _correlate3(p, ky), _correlate3(t, kx), _correlate3(t, ky)
    el = (np.abs(pgx - tgx) + np.abs(pgy - tgy) + 0.01 * (np.abs(pgx) + np.abs(pgy))) * m
    gx = (np.sign(pgx - tgx) + 0.01 * np.sign(pgx)) * m
    gy = (np.sign(pgy - tgy) + 0.01 * np.sign(pgy)) * m
    # adjoint of correlation with k (zero padding) is correlation with k flipped on both axes
    deriv = _correlate3(gx, kx[::-1, ::-1]) + _correlate3(gy, ky[::-1, ::-1])
    return p, _per_image(el), _per_image(m), deriv


# --- Laplacian pyramid (Numba) ------------------------------------------------------------------


@numba.njit(cache=True)
def _reflect(q: int, n: int) -> int:
    if q < 0:
        return -q
    if q > n - 1:
        return 2 * (n - 1) - q
    return q


@numba.njit(cache=True)
def _blur(x: np.ndarray, gain: float) -> np.ndarray:
    """Separable 5×5 binomial blur ``gain·[1,4,6,4,1]ᵀ[1,4,6,4,1]/256`` with reflect padding 2."""
    h, w = x.shape
    k = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0
    tmp = np.zeros((h, w))
    for i in range(h):
        for j in range(w):
            s = 0.0
            for a in range(5):
                s += k[a] * x[_reflect(i + a - 2, h), j]
            tmp[i, j] = s
    out = np.zeros((h, w))
    for i in range(h):
        for j in range(w):
            s = 0.0
            for b in range(5):
                s += k[b] * tmp[i, _reflect(j + b - 2, w)]
            out[i, j] = gain * s
    return out


@numba.njit(cache=True)
def _blur_adjoint(g: np.ndarray, gain: float) -> np.ndarray:
    """Transpose of :func:`_blur`: scatter each output's weights back onto the reflected sources."""
    h, w = g.shape
    k = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0
    tmp = np.zeros((h, w))
    for i in range(h):
        for j in range(w):
            for b in range(5):
                tmp[i, _reflect(j + b - 2, w)] += gain * k[b] * g[i, j]
    out = np.zeros((h, w))
    for i in range(h):
        for j in range(w):
            for a in range(5):
                out[_reflect(i + a - 2, h), j] += k[a] * tmp[i, j]
    return out


def _pyramid_image(x: np.ndarray, levels: int) -> list[np.ndarray]:
    out, cur = [], x
    for _ in range(levels):
        h, w = cur.shape
        c = cur[: h - h % 2, : w - w % 2]
        down = _blur(c, 1.0)[::2, ::2].copy()
        z = np.zeros_like(c)
        z[::2, ::2] = down
        out.append(c - _blur(z, 4.0))
        cur = down
    out.append(cur)
    return out


def laplacian_pyramid(image, levels: int = 5) -> list[np.ndarray]:
    """Band-pass levels and residual of a ``(..., H, W)`` array (float64), like the torch pyramid.

    Level ``i``: crop ``x_i`` to even size, ``down = blur(x_i)[::2, ::2]``, ``L_i = x_i - 4·blur(z)``
    with ``z`` zero everywhere but ``z[::2, ::2] = down``; ``x_{i+1} = down``.
    """
    x = np.asarray(image, dtype=np.float64)
    flat = x.reshape(-1, *x.shape[-2:])
    per = [_pyramid_image(np.ascontiguousarray(f), int(levels)) for f in flat]
    return [np.stack([p[i] for p in per]).reshape(*x.shape[:-2], *per[0][i].shape) for i in range(int(levels) + 1)]


def reconstruct(pyramid: Sequence[np.ndarray]) -> np.ndarray:
    """Inverse of :func:`laplacian_pyramid` (exact when H and W are multiples of ``2^levels``)."""
    cur = np.asarray(pyramid[-1], dtype=np.float64)
    for band in reversed(pyramid[:-1]):
        flat_b = band.reshape(-1, *band.shape[-2:])
        flat_c = cur.reshape(-1, *cur.shape[-2:])
        up = []
        for b, c in zip(flat_b, flat_c):
            z = np.zeros_like(b)
            z[::2, ::2] = c
            up.append(b + _blur(z, 4.0))
        cur = np.stack(up).reshape(band.shape)
    return cur


def _laplacian_image_grad(d: np.ndarray, levels: int) -> tuple[float, np.ndarray]:
    """Value ``(1/levels) Σ_i 2^i mean|L_i(d)|`` of one image and its gradient in ``d``."""
    sizes, cur = [], d
    bands = _pyramid_image(d, levels)
    for _ in range(levels):
        sizes.append(cur.shape)
        h, w = cur.shape
        cur = np.zeros(((h - h % 2) // 2, (w - w % 2) // 2))
    value = sum(2.0**i * np.abs(b).mean() for i, b in enumerate(bands[:-1])) / levels
    g_next = np.zeros_like(bands[-1])  # gradient w.r.t. x_{i+1}
    for i in reversed(range(levels)):
        band = bands[i]
        g_band = 2.0**i / levels * np.sign(band) / band.size
        g_z = _blur_adjoint(-g_band, 4.0)
        g_down = g_z[::2, ::2] + g_next
        g_b = np.zeros_like(band)
        g_b[::2, ::2] = g_down
        g_c = g_band + _blur_adjoint(g_b, 1.0)
        g_x = np.zeros(sizes[i])
        g_x[: band.shape[0], : band.shape[1]] = g_c
        g_next = g_x
    return value, g_next


def _laplacian_parts(pred, target, levels):
    fn = "laplacian"
    p, t, _ = _inputs(fn, pred, target)
    if int(levels) < 1:
        raise ValueError(f"laplacian: levels must be >= 1; got {levels}")
    check_min_size(fn, "pred", p, (2, 3), 2 ** (int(levels) + 1),
                   f"a {levels}-level pyramid (reflect padding 2 at the last level)")
    d = p - t
    num, deriv = np.zeros(p.shape[0]), np.zeros_like(p)
    for b in range(p.shape[0]):
        num[b], deriv[b, 0] = _laplacian_image_grad(np.ascontiguousarray(d[b, 0]), int(levels))
    return p, num, np.ones(p.shape[0]), deriv


# --- combining parts ---------------------------------------------------------------------------------


def _batch(parts, scale, grad):
    p, num, den, deriv = parts
    total = den.sum()
    value = scale * num.sum() / total if total > 0 else 0.0
    if not grad:
        return float(value)
    return float(value), (scale * deriv / total if total > 0 else np.zeros_like(p))


def _per_image_values(parts, scale):
    """Per-image values ``(B,)`` and gradients (row ``b`` is the gradient of value ``b``)."""
    p, num, den, deriv = parts
    ok = den > 0
    safe = np.where(ok, den, 1.0)
    values = np.where(ok, scale * num / safe, 0.0)
    grads = np.where(ok.reshape(-1, 1, 1, 1), scale * deriv / safe.reshape(-1, 1, 1, 1), 0.0)
    return values, grads


def unknown_l1(pred, target, mask, area=None, grad=False):
    """``Σ|p - t|·m · area / (H·W·Σm)``; gradient ``sign(p - t)·m·scale/Σm``."""
    parts = _region_parts("unknown_l1", pred, target, mask, _l1, False)
    return _batch(parts, _scale(parts[0], area), grad)


def known_l1(pred, target, mask, area=None, grad=False):
    """L1 on the known region ``1 - m``."""
    parts = _region_parts("known_l1", pred, target, mask, _l1, True)
    return _batch(parts, _scale(parts[0], area), grad)


def known_smooth_l1(pred, target, mask, area=None, grad=False):
    """Smooth L1 (beta 1) on the known region ``1 - m``."""
    parts = _region_parts("known_smooth_l1", pred, target, mask, _smooth_l1, True)
    return _batch(parts, _scale(parts[0], area), grad)


def smooth_l1(pred, target, mask, area=None, grad=False):
    """Smooth L1 (beta 1) on the unknown region ``m``."""
    parts = _region_parts("smooth_l1", pred, target, mask, _smooth_l1, False)
    return _batch(parts, _scale(parts[0], area), grad)


def matting_bce(pred, target, mask, area=None, grad=False):
    """``-(t log p + (1-t) log(1-p))`` (logs clamped at -100) on the unknown region."""
    parts = _region_parts("matting_bce", pred, target, mask, _bce, False)
    return _batch(parts, _scale(parts[0], area), grad)


def matting_focal(pred, target, mask, alpha=0.25, gamma=2.0, area=None, grad=False):
    """``α_t (1 - p_t)^γ BCE(p, t)`` on probabilities, on the unknown region."""
    parts = _region_parts("matting_focal", pred, target, mask, _focal(alpha, gamma), False)
    return _batch(parts, _scale(parts[0], area), grad)


def gradient_penalty(pred, target, mask, area=None, grad=False):
    """Sobel (zero pad 1) L1 of gradients plus ``0.01·|∇pred|`` on the unknown region."""
    parts = _gradient_parts(pred, target, mask)
    return _batch(parts, _scale(parts[0], area), grad)


def laplacian(pred, target, levels=5, grad=False):
    """``(1/levels) Σ_i 2^i mean|L_i(pred) - L_i(target)|`` over the batch."""
    return _batch(_laplacian_parts(pred, target, levels), 1.0, grad)


# --- loss sets -----------------------------------------------------------------------------------


def _term_parts(fn, key, pred, target, mask, area, levels):
    check_choice(fn, "loss", key, TERM_KEYS)
    if key == "laplacian":
        parts = _laplacian_parts(pred, target, levels)
        return parts, 1.0
    if key == "gradient_penalty":
        parts = _gradient_parts(pred, target, mask)
    else:
        elementwise, known = {
            "unknown_l1": (_l1, False),
            "known_l1": (_l1, True),
            "known_smooth_l1": (_smooth_l1, True),
            "smooth_l1": (_smooth_l1, False),
            "bce": (_bce, False),
            "sigmoid_focal": (_focal(0.25, 2.0), False),
        }[key]
        parts = _region_parts(fn, pred, target, mask, elementwise, known)
    return parts, _scale(parts[0], area)


def matting_set(pred, target, mask, losses=("unknown_l1", "known_l1", "gradient_penalty"), area=None, levels=5,
                grad=False):
    """``{key: term value}`` for each key; gradient: of the sum of all terms."""
    fn = "matting_set"
    p, _, _ = _inputs(fn, pred, target, mask)
    out, total = {}, np.zeros_like(p)
    for k in losses:
        parts, scale = _term_parts(fn, k, pred, target, mask, area, levels)
        value, g = _batch(parts, scale, True)
        out[k] = value
        total += g
    return (out, total) if grad else out


def segmentation_samples(target, route="binary") -> np.ndarray:
    """Bool ``(B,)``: ``binary`` — all values in {0, 1}; ``constant`` — all 0 or all 1."""
    t = np.asarray(target).reshape(len(target), -1)
    if route == "binary":
        return np.all((t == 0) | (t == 1), axis=1)
    return np.all(t == 0, axis=1) | np.all(t == 1, axis=1)


def seg_matting_set(pred, target, mask, seg=("bce",), matting=("unknown_l1", "known_l1"), route="binary", area=None,
                    levels=5, grad=False):
    """Per sample: segmentation terms if :func:`segmentation_samples`, else matting terms; each key is
    the sum of its per-image values over the samples that took it (0 if none)."""
    fn = "seg_matting_set"
    check_choice(fn, "route", route, ROUTES)
    p, t, _ = _inputs(fn, pred, target, mask)
    is_seg = segmentation_samples(t, route)
    out, total = {}, np.zeros_like(p)
    for k in dict.fromkeys([*seg, *matting]):
        parts, scale = _term_parts(fn, k, pred, target, mask, area, levels)
        values, grads = _per_image_values(parts, scale)
        take = (is_seg & (k in seg)) | (~is_seg & (k in matting))
        out[k] = float(values[take].sum())
        total += grads * take.reshape(-1, 1, 1, 1)
    return (out, total) if grad else out

"""Reference matting losses, float64, with analytic gradients (Numba kernels).

Every masked term is written as per-image parts ``(num_b, den_b, dnum_b/dpred)``: the batch loss is
``scale·Σnum / Σden`` and the per-image loss ``scale·num_b / den_b`` (0 when the denominator is 0),
``scale = area / (H·W)`` (1 for ``area=None``). The Laplacian has ``den_b = 1``, so the batch value is
the mean of the per-image values. Gradients are those of the value with respect to ``pred``.

The elementwise terms (L1, smooth L1, BCE, focal) share one parallel kernel, :func:`region_sums`,
selected by a term code; the Sobel penalty has its own, :func:`sobel_sums`, with the stencils computed
on the fly. Both compute the derivative only when asked (``grad=True``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numba
import numpy as np
from numba import prange

from lossgraph._checks import InputError, check_choice, check_min_size, check_shapes, check_unit_interval
from lossgraph._types import ArrayLike, RefResult, Route

from ._util import as_f64, power

MATTE = ("B", 1, "H", "W")
BINOMIAL = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0
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
    if m is not None:  # a weight in [0, 1]; alpha targets may lie anywhere
        check_unit_interval(fn, "mask", m)
    return p, t, m


def _scale(p: np.ndarray, area) -> float:
    return 1.0 if area is None else float(area) / (p.shape[-2] * p.shape[-1])


# --- masked elementwise terms (one parallel Numba pass) ---------------------------------------------

L1, SMOOTH_L1, BCE, FOCAL = 0, 1, 2, 3  # term codes of region_sums
REGION_TERMS = {  # loss-set key -> (term code, on the known region 1 - m)
    "unknown_l1": (L1, False),
    "known_l1": (L1, True),
    "known_smooth_l1": (SMOOTH_L1, True),
    "smooth_l1": (SMOOTH_L1, False),
    "bce": (BCE, False),
    "sigmoid_focal": (FOCAL, False),
}


@numba.njit(cache=True, inline="always")
def _sign(x):
    """``sign(x)`` (NaN stays NaN) without a branch on the sign, which is random for real data."""
    return (x > 0.0) * 1.0 - (x < 0.0) * 1.0 if x == x else x


@numba.njit(cache=True, inline="always")
def _log_clamped(x):
    """``max(log x, -100)`` and its derivative ``1/x`` (0 where clamped, also for x <= 0)."""
    if x > 0.0:
        lx = math.log(x)
        if lx >= -100.0:
            return lx, 1.0 / x
    return -100.0, 0.0


@numba.njit(cache=True, inline="always")
def _term(p, t, term, alpha, gamma, want_grad):
    """One element's loss ``ℓ(p, t)`` and ``dℓ/dp`` (0 unless ``want_grad``)."""
    d = p - t
    if term == L1:
        return abs(d), _sign(d) if want_grad else 0.0
    if term == SMOOTH_L1:
        if abs(d) < 1.0:
            return 0.5 * d * d, d
        return abs(d) - 0.5, _sign(d)
    lp, dlp = _log_clamped(p)
    lq, dlq = _log_clamped(1.0 - p)
    bce = -(t * lp + (1.0 - t) * lq)
    dbce = -(t * dlp - (1.0 - t) * dlq) if want_grad else 0.0
    if term == BCE:
        return bce, dbce
    # focal: a_t q^γ BCE with q = 1 - p_t, dq/dp = 1 - 2t; at q = 0 the q^γ factor is 0^γ and the
    # derivative of q^γ is taken as 0 (q^γ·BCE ~ q^(1+γ) there, also for γ < 1)
    q = 1.0 - (p * t + (1.0 - p) * (1.0 - t))
    a = alpha * t + (1.0 - alpha) * (1.0 - t) if alpha >= 0.0 else 1.0
    qg = power(q, gamma) if q > 0.0 else 0.0**gamma
    if not want_grad:
        return a * qg * bce, 0.0
    dqg = gamma * power(q, gamma - 1.0) if q > 0.0 else 0.0
    return a * qg * bce, a * (dqg * (1.0 - 2.0 * t) * bce + qg * dbce)


@numba.njit(cache=True, parallel=True)
def region_sums(p, t, m, term, known, alpha, gamma, want_grad):
    """p, t, m (B, H, W) -> (Σ ℓ·r per image (B,), Σ r per image (B,), ``dℓ/dp · r`` (B, H, W)).

    ``r = 1 - m`` on the known region, else ``m``. Rows run in parallel, each into its own partial
    sums. Without ``want_grad`` the derivative is an empty (0, 0, 0) array and is not computed.
    """
    b_n, h, w = p.shape
    num = np.zeros((b_n, h))
    den = np.zeros((b_n, h))
    grad = np.empty((b_n, h, w) if want_grad else (0, 0, 0))
    for k in prange(b_n * h):
        b = k // h
        i = k - b * h
        s = 0.0
        r_sum = 0.0
        for j in range(w):
            r = 1.0 - m[b, i, j] if known else m[b, i, j]
            value, deriv = _term(p[b, i, j], t[b, i, j], term, alpha, gamma, want_grad)
            s += value * r
            r_sum += r
            if want_grad:
                grad[b, i, j] = deriv * r
        num[b, i] = s
        den[b, i] = r_sum
    return num.sum(axis=1), den.sum(axis=1), grad


def _region_parts(p, t, m, term, known, grad, alpha=0.25, gamma=2.0):
    num, den, deriv = region_sums(p[:, 0], t[:, 0], m[:, 0], term, known, float(alpha), float(gamma), grad)
    return num, den, deriv.reshape(p.shape) if grad else None


# --- Sobel gradient penalty ------------------------------------------------------------------------


@numba.njit(cache=True, inline="always")
def _sobel(x, b, i, j):
    """``(g_x, g_y)`` of image ``b`` of ``x`` (B, H, W) at ``(i, j)``: 3×3 Sobel cross-correlation, zero
    padding 1.

    ``k_x = [1, 2, 1]ᵀ[-1, 0, 1]``, ``k_y = k_xᵀ``. Both are odd under flipping, so the adjoint of
    each is minus itself.
    """
    h, w = x.shape[1:]
    gx = 0.0
    gy = 0.0
    for a in range(-1, 2):
        for c in range(-1, 2):
            u = i + a
            v = j + c
            if (a != 0 or c != 0) and 0 <= u < h and 0 <= v < w:
                xv = x[b, u, v]
                gx += (2.0 - abs(a)) * c * xv
                gy += (2.0 - abs(c)) * a * xv
    return gx, gy


@numba.njit(cache=True, parallel=True)
def sobel_sums(p, t, m, want_grad):
    """p, t, m (B, H, W) -> (Σ e·m per image, Σ m per image, d(Σ e·m)/dp (B, H, W) or empty).

    ``e = |∇x p - ∇x t| + |∇y p - ∇y t| + 0.01 (|∇x p| + |∇y p|)`` with Sobel gradients computed on the
    fly. The derivative is the adjoint Sobel applied to ``(sign(∇p - ∇t) + 0.01 sign(∇p))·m``, in a
    second pass only when ``want_grad``.
    """
    b_n, h, w = p.shape
    num = np.zeros((b_n, h))
    den = np.zeros((b_n, h))
    gx = np.empty((b_n, h, w) if want_grad else (0, 0, 0))
    gy = np.empty_like(gx)
    for k in prange(b_n * h):
        b = k // h
        i = k - b * h
        s = 0.0
        m_sum = 0.0
        for j in range(w):
            mv = m[b, i, j]
            pgx, pgy = _sobel(p, b, i, j)
            tgx, tgy = _sobel(t, b, i, j)
            s += (abs(pgx - tgx) + abs(pgy - tgy) + 0.01 * (abs(pgx) + abs(pgy))) * mv
            m_sum += mv
            if want_grad:
                gx[b, i, j] = (_sign(pgx - tgx) + 0.01 * _sign(pgx)) * mv
                gy[b, i, j] = (_sign(pgy - tgy) + 0.01 * _sign(pgy)) * mv
        num[b, i] = s
        den[b, i] = m_sum
    grad = np.empty_like(gx)
    if want_grad:
        for k in prange(b_n * h):
            b = k // h
            i = k - b * h
            for j in range(w):
                grad[b, i, j] = -(_sobel(gx, b, i, j)[0] + _sobel(gy, b, i, j)[1])
    return num.sum(axis=1), den.sum(axis=1), grad


def _gradient_parts(p, t, m, grad):
    num, den, deriv = sobel_sums(p[:, 0], t[:, 0], m[:, 0], grad)
    return num, den, deriv.reshape(p.shape) if grad else None


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


def _laplacian_image_grad(d: np.ndarray, levels: int, want_grad: bool) -> tuple[float, np.ndarray | None]:
    """Value ``(1/levels) Σ_i 2^i mean|L_i(d)|`` of one image and its gradient in ``d`` (None unless
    ``want_grad``)."""
    bands = _pyramid_image(d, levels)
    value = sum(2.0**i * np.abs(b).mean() for i, b in enumerate(bands[:-1])) / levels
    if not want_grad:
        return value, None
    sizes, cur = [], d
    for _ in range(levels):
        sizes.append(cur.shape)
        h, w = cur.shape
        cur = np.zeros(((h - h % 2) // 2, (w - w % 2) // 2))
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


def _laplacian_parts(p, t, levels, grad):
    if int(levels) < 1:
        raise InputError(f"laplacian: levels must be >= 1; got {levels}")
    check_min_size("laplacian", "pred", p, (2, 3), 2 ** (int(levels) + 1),
                   f"a {levels}-level pyramid (reflect padding 2 at the last level)")
    d = p - t
    num, deriv = np.zeros(p.shape[0]), (np.zeros_like(p) if grad else None)
    for b in range(p.shape[0]):
        num[b], g = _laplacian_image_grad(np.ascontiguousarray(d[b, 0]), int(levels), grad)
        if grad:
            deriv[b, 0] = g
    return num, np.ones(p.shape[0]), deriv


# --- combining parts ---------------------------------------------------------------------------------


def _batch(parts, scale, grad):
    """Batch value ``scale·Σnum / Σden`` (0 when Σden = 0), and its gradient with ``grad``."""
    num, den, deriv = parts
    total = den.sum()
    value = float(scale * num.sum() / total) if total > 0 else 0.0
    if not grad:
        return value
    if total > 0:
        deriv *= scale / total  # in place: the parts own their derivative
    else:
        deriv[...] = 0.0
    return value, deriv


def _per_image_values(parts, scale, grad):
    """Per-image values ``(B,)`` and the factors ``(B,)`` that turn ``deriv[b]`` into the gradient of
    value ``b`` (0 where the image's denominator is 0); the factors are None unless ``grad``."""
    num, den, _ = parts
    ok = den > 0
    safe = np.where(ok, den, 1.0)
    return np.where(ok, scale * num / safe, 0.0), (np.where(ok, scale / safe, 0.0) if grad else None)


def _masked(fn, pred, target, mask, key, area, grad, **focal):
    p, t, m = _inputs(fn, pred, target, mask)
    return _batch(_region_parts(p, t, m, *REGION_TERMS[key], grad, **focal), _scale(p, area), grad)


def unknown_l1(
    pred: ArrayLike,
    target: ArrayLike,
    mask: ArrayLike,
    area: float | None = None,
    grad: bool = False,
) -> RefResult:
    """``Σ|p - t|·m · area / (H·W·Σm)``; gradient ``sign(p - t)·m·scale/Σm``."""
    return _masked("unknown_l1", pred, target, mask, "unknown_l1", area, grad)


def known_l1(
    pred: ArrayLike,
    target: ArrayLike,
    mask: ArrayLike,
    area: float | None = None,
    grad: bool = False,
) -> RefResult:
    """L1 on the known region ``1 - m``."""
    return _masked("known_l1", pred, target, mask, "known_l1", area, grad)


def known_smooth_l1(
    pred: ArrayLike,
    target: ArrayLike,
    mask: ArrayLike,
    area: float | None = None,
    grad: bool = False,
) -> RefResult:
    """Smooth L1 (beta 1) on the known region ``1 - m``."""
    return _masked("known_smooth_l1", pred, target, mask, "known_smooth_l1", area, grad)


def smooth_l1(
    pred: ArrayLike,
    target: ArrayLike,
    mask: ArrayLike,
    area: float | None = None,
    grad: bool = False,
) -> RefResult:
    """Smooth L1 (beta 1) on the unknown region ``m``."""
    return _masked("smooth_l1", pred, target, mask, "smooth_l1", area, grad)


def matting_bce(
    pred: ArrayLike,
    target: ArrayLike,
    mask: ArrayLike,
    area: float | None = None,
    grad: bool = False,
) -> RefResult:
    """``-(t log p + (1-t) log(1-p))`` (logs clamped at -100) on the unknown region."""
    return _masked("matting_bce", pred, target, mask, "bce", area, grad)


def matting_focal(
    pred: ArrayLike,
    target: ArrayLike,
    mask: ArrayLike,
    alpha: float = 0.25,
    gamma: float = 2.0,
    area: float | None = None,
    grad: bool = False,
) -> RefResult:
    """``α_t (1 - p_t)^γ BCE(p, t)`` on probabilities, on the unknown region (``α < 0``: ``α_t = 1``)."""
    return _masked("matting_focal", pred, target, mask, "sigmoid_focal", area, grad, alpha=alpha, gamma=gamma)


def gradient_penalty(
    pred: ArrayLike,
    target: ArrayLike,
    mask: ArrayLike,
    area: float | None = None,
    grad: bool = False,
) -> RefResult:
    """Sobel (zero pad 1) L1 of gradients plus ``0.01·|∇pred|`` on the unknown region."""
    p, t, m = _inputs("gradient_penalty", pred, target, mask)
    return _batch(_gradient_parts(p, t, m, grad), _scale(p, area), grad)


def laplacian(
    pred: ArrayLike,
    target: ArrayLike,
    levels: int = 5,
    grad: bool = False,
) -> RefResult:
    """``(1/levels) Σ_i 2^i mean|L_i(pred) - L_i(target)|`` over the batch."""
    p, t, _ = _inputs("laplacian", pred, target)
    return _batch(_laplacian_parts(p, t, levels, grad), 1.0, grad)


# --- loss sets -----------------------------------------------------------------------------------


def _term_parts(key, p, t, m, area, levels, grad):
    """Parts and scale of one (checked) loss-set term on validated inputs (focal: α = 0.25, γ = 2)."""
    if key == "laplacian":
        return _laplacian_parts(p, t, levels, grad), 1.0
    if key == "gradient_penalty":
        return _gradient_parts(p, t, m, grad), _scale(p, area)
    return _region_parts(p, t, m, *REGION_TERMS[key], grad), _scale(p, area)


def matting_set(
    pred: ArrayLike,
    target: ArrayLike,
    mask: ArrayLike,
    losses: Sequence[str] = ("unknown_l1", "known_l1", "gradient_penalty"),
    area: float | None = None,
    levels: int = 5,
    grad: bool = False,
) -> RefResult:
    """``{key: term value}`` for each key; gradient: of the sum of all terms."""
    fn = "matting_set"
    p, t, m = _inputs(fn, pred, target, mask)
    for k in losses:
        check_choice(fn, "loss", k, TERM_KEYS)
    out, total = {}, np.zeros_like(p) if grad else None
    for k in losses:
        parts, scale = _term_parts(k, p, t, m, area, levels, grad)
        if grad:
            out[k], g = _batch(parts, scale, True)
            total += g
        else:
            out[k] = _batch(parts, scale, False)
    return (out, total) if grad else out


def segmentation_samples(
    target: ArrayLike,
    route: Route = "binary",
) -> np.ndarray:
    """Bool ``(B,)``: ``binary`` — all values in {0, 1}; ``constant`` — all 0 or all 1."""
    t = np.asarray(target)
    t = t.reshape(len(t), -1)
    if route == "binary":
        return np.all((t == 0) | (t == 1), axis=1)
    return np.all(t == 0, axis=1) | np.all(t == 1, axis=1)


def seg_matting_set(
    pred: ArrayLike,
    target: ArrayLike,
    mask: ArrayLike,
    seg: Sequence[str] = ("bce",),
    matting: Sequence[str] = ("unknown_l1", "known_l1"),
    route: Route = "binary",
    area: float | None = None,
    levels: int = 5,
    grad: bool = False,
) -> RefResult:
    """Per sample: segmentation terms if :func:`segmentation_samples`, else matting terms; each key is
    the sum of its per-image values over the samples that took it (0 if none)."""
    fn = "seg_matting_set"
    check_choice(fn, "route", route, ROUTES)
    p, t, m = _inputs(fn, pred, target, mask)
    keys = list(dict.fromkeys([*seg, *matting]))
    for k in keys:
        check_choice(fn, "loss", k, TERM_KEYS)
    is_seg = segmentation_samples(t, route)
    out, total = {}, np.zeros_like(p) if grad else None
    for k in keys:
        parts, scale = _term_parts(k, p, t, m, area, levels, grad)
        values, factors = _per_image_values(parts, scale, grad)
        take = (is_seg & (k in seg)) | (~is_seg & (k in matting))
        out[k] = float(values[take].sum())
        if grad:
            deriv = parts[2]
            deriv *= (factors * take).reshape(-1, 1, 1, 1)
            total += deriv
    return (out, total) if grad else out

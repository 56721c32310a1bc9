"""Reference center loss and ArcFace, float64, with analytic gradients (per-sample Numba loops).

Written from the formulas:

* center loss ``loss_i = λ/2 ‖f_i - c_{y_i}‖² / n_{y_i}`` (``n_j`` samples of class j in the batch);
  ``∂/∂f_i = λ (f_i - c_{y_i}) / n_{y_i}``, ``∂/∂c_j = -Σ_{i: y_i = j} λ (f_i - c_j) / n_j``.
* ArcFace: ``z_ij = s cos θ_ij`` (``j ≠ y_i``), ``z_{i y_i} = s φ(cos θ_{i y_i})``, ``loss_i =
  logsumexp(z_i) - z_{i y_i}``; ``∂loss_i/∂z_ij = softmax(z_i)_j - [j = y_i]``, chained through
  ``φ`` (``dφ/dcos = cos m - sin m · d sinθ/dcos``, ``d sinθ/dcos = -cos/sin`` above the
  ``sin²`` floor, 0 on it), the dot products and the row normalisation
  (``∂x̂/∂x = (I - x̂x̂ᵀ)/‖x‖`` above the norm floor, ``I/eps`` below it).

With ``centers_from`` / ``weight_from`` = ``"parameter"`` the class tensor is not an argument: it is
the seeded initial value the torch module starts from (``lossgraph._seeded.seeded_normal``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from lossgraph._checks import InputTypeError, check_choice, check_shapes
from lossgraph._seeded import seeded_normal
from lossgraph._types import ArrayLike, Reduction, RefResult

from ._util import as_f64, as_labels, check_labels, reduce

SIN2_EPS = 1e-9  # the documented floor of sin²θ (lossgraph.metric.SIN2_EPS)
NORM_EPS = 1e-12  # the documented norm floor when normalising rows


def _classes(fn: str, what: str, given, source: str, num_classes: int, feat_dim: int, seed: int) -> np.ndarray:
    check_choice(fn, f"{what}_from", source, ("parameter", "input"))
    if source == "input":
        if given is None:
            raise InputTypeError(f"{fn}: {what}_from='input' needs the {what} array (C, D)")
        return as_f64(fn, what, given)
    if given is not None:
        raise InputTypeError(f"{fn}: {what} is a seeded parameter ({what}_from='parameter'); do not pass it")
    return seeded_normal(seed, (num_classes, feat_dim)).astype(np.float64)


def _validate(fn: str, what: str, features, labels, classes: np.ndarray, source: str):
    f = as_f64(fn, "features", features)
    y = as_labels(fn, "labels", labels)
    if source == "parameter":  # the user passes features only: name them in the message
        check_shapes(fn, [(what, classes, ("C", "D")), ("features", f, ("N", "D")), ("labels", y, ("N",))])
    else:
        check_shapes(fn, [("features", f, ("N", "D")), ("labels", y, ("N",)), (what, classes, ("C", "D"))])
    check_labels(fn, "labels", y, classes.shape[0], None)
    return f, y


@njit(cache=True)
def _center_kernel(f, y, c, lam):
    """Per-sample loss ``(N,)``, d(sum)/df ``(N, D)``, d(sum)/dc ``(C, D)``."""
    n, d = f.shape
    counts = np.zeros(c.shape[0])
    for i in range(n):
        counts[y[i]] += 1.0
    loss = np.zeros(n)
    gf = np.zeros((n, d))
    gc = np.zeros(c.shape)
    for i in range(n):
        k = y[i]
        sq = 0.0
        for j in range(d):
            diff = f[i, j] - c[k, j]
            sq += diff * diff
            gf[i, j] = lam * diff / counts[k]
            gc[k, j] -= lam * diff / counts[k]
        loss[i] = 0.5 * lam * sq / counts[k]
    return loss, gf, gc


def center_loss(
    features: ArrayLike,
    labels: ArrayLike,
    centers: ArrayLike | None = None,
    *,
    num_classes: int = 10,
    feat_dim: int = 8,
    lambda_c: float = 1.0,
    centers_from: str = "parameter",
    seed: int = 0,
    reduction: Reduction = "mean",
    grad: bool = False,
) -> RefResult:
    """``λ/2 ‖f_i - c_{y_i}‖² / n_{y_i}`` reduced; grad: ``{"features": ..., "centers": ...}``
    (centers only with ``centers_from="input"``)."""
    fn = "center_loss"
    c = _classes(fn, "centers", centers, centers_from, num_classes, feat_dim, seed)
    f, y = _validate(fn, "centers", features, labels, c, centers_from)
    loss, gf, gc = _center_kernel(f, y, c, float(lambda_c))
    value, scale = reduce(loss, reduction, fn)
    if not grad:
        return value
    grads = {"features": scale * gf}
    if centers_from == "input":
        grads["centers"] = scale * gc
    return value, grads


def _unit_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows divided by ``max(‖x‖, NORM_EPS)``, and those divisors."""
    norm = np.maximum(np.sqrt((x * x).sum(1)), NORM_EPS)
    return x / norm[:, None], norm


def _unit_rows_backward(x_hat: np.ndarray, norm: np.ndarray, g_hat: np.ndarray) -> np.ndarray:
    """Chain ``g_hat = ∂L/∂x̂`` back to ``x`` through ``x̂ = x / max(‖x‖, eps)``."""
    above = norm > NORM_EPS
    proj = g_hat - (g_hat * x_hat).sum(1, keepdims=True) * x_hat
    return np.where(above[:, None], proj, g_hat) / norm[:, None]


@njit(cache=True)
def _arcface_kernel(cos, y, s, m, easy, sin2_eps):
    """From ``cos (N, C)``: per-sample loss ``(N,)`` and ``∂loss_i/∂cos_ij (N, C)``."""
    n, c = cos.shape
    cm, sm = math.cos(m), math.sin(m)
    th, mm = math.cos(math.pi - m), math.sin(math.pi - m) * m
    loss = np.zeros(n)
    gcos = np.zeros((n, c))
    z = np.zeros(c)
    for i in range(n):
        t = y[i]
        ct = cos[i, t]
        sin2 = 1.0 - ct * ct
        if sin2 > sin2_eps:
            sin_t, dsin = math.sqrt(sin2), -ct / math.sqrt(sin2)
        else:
            sin_t, dsin = math.sqrt(sin2_eps), 0.0
        margin_on = ct > 0.0 if easy else ct > th
        if margin_on:  # cos(θ + m)
            phi, dphi = ct * cm - sin_t * sm, cm - dsin * sm
        elif easy:
            phi, dphi = ct, 1.0
        else:
            phi, dphi = ct - mm, 1.0
        for j in range(c):
            z[j] = s * cos[i, j]
        z[t] = s * phi
        zmax = z.max()
        total = 0.0
        for j in range(c):
            total += math.exp(z[j] - zmax)
        lse = zmax + math.log(total)
        loss[i] = lse - z[t]
        for j in range(c):
            gz = math.exp(z[j] - lse)
            gcos[i, j] = s * gz
        gcos[i, t] = s * (math.exp(z[t] - lse) - 1.0) * dphi
    return loss, gcos


def arcface(
    features: ArrayLike,
    labels: ArrayLike,
    weight: ArrayLike | None = None,
    *,
    num_classes: int = 10,
    feat_dim: int = 8,
    s: float = 64.0,
    m: float = 0.5,
    easy_margin: bool = False,
    weight_from: str = "parameter",
    seed: int = 0,
    reduction: Reduction = "mean",
    grad: bool = False,
) -> RefResult:
    """ArcFace cross-entropy (see module docstring); grad: ``{"features": ..., "weight": ...}``
    (weight only with ``weight_from="input"``)."""
    fn = "arcface"
    w = _classes(fn, "weight", weight, weight_from, num_classes, feat_dim, seed)
    f, y = _validate(fn, "weight", features, labels, w, weight_from)
    f_hat, f_norm = _unit_rows(f)
    w_hat, w_norm = _unit_rows(w)
    cos = f_hat @ w_hat.T
    loss, gcos = _arcface_kernel(cos, y, float(s), float(m), bool(easy_margin), SIN2_EPS)
    value, scale = reduce(loss, reduction, fn)
    if not grad:
        return value
    g = scale * gcos
    grads = {"features": _unit_rows_backward(f_hat, f_norm, g @ w_hat)}
    if weight_from == "input":
        grads["weight"] = _unit_rows_backward(w_hat, w_norm, g.T @ f_hat)
    return value, grads

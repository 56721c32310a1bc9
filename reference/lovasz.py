"""Reference Lovász hinge and Lovász-Softmax, from Alg. 1 of Berman et al. (CVPR 2018), in float64.

For one class and one group of pixels: sort the errors in decreasing order (stable), accumulate the
Jaccard loss ``J_k = 1 - |G \\ S_k| / |G ∪ S_k|`` of the top-k set ``S_k`` and take the increments
``g_k = J_k - J_{k-1}``; the loss is ``Σ e_(k) g_k`` and its (sub)gradient with respect to the error
of pixel ``π_k`` is ``g_k`` (the increments permuted back). Ignored pixels are removed.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from numba import njit, prange

from lossgraph._checks import InputError, check_shapes, check_unit_interval

from ._util import as_f64, as_labels, check_labels, sigmoid, softmax, softmax_backward


@njit(cache=True)
def _lovasz_extension(errors, fg, hinge):
    """Value and gradient w.r.t. ``errors`` (1-D) of the Lovász extension of the Jaccard loss."""
    p = errors.shape[0]
    grad = np.zeros(p)
    if p == 0:
        return 0.0, grad
    order = np.argsort(-errors, kind="mergesort")
    gts = 0.0
    for i in range(p):
        gts += fg[i]
    tp = 0.0
    fp = 0.0
    prev = 0.0
    value = 0.0
    for k in range(p):
        i = order[k]
        if fg[i]:
            tp += 1.0
        else:
            fp += 1.0
        jac = 1.0 - (gts - tp) / (gts + fp)
        g = jac - prev
        prev = jac
        e = errors[i]
        if hinge and e <= 0.0:
            continue
        value += e * g
        grad[i] = g
    return value, grad


@njit(cache=True, parallel=True)
def _softmax_groups(probs, labels, channels, fg_labels, present_only, ignore, use_ignore):
    """probs (N, C, P), labels (N, P) -> (mean over groups of the mean over classes taken, grad).

    The (group, class) pairs run in parallel; each writes only its own row ``grad[n, c]``, so
    ``channels`` must not repeat.
    """
    n_groups = probs.shape[0]
    n_ch = channels.shape[0]
    grad = np.zeros_like(probs)
    values = np.zeros((n_groups, n_ch))
    taken = np.zeros((n_groups, n_ch), dtype=np.bool_)
    for k in prange(n_groups * n_ch):
        n = k // n_ch
        j = k - n * n_ch
        lab = labels[n]
        idx = np.nonzero(lab != ignore)[0] if use_ignore else np.arange(lab.shape[0])
        fg = lab[idx] == fg_labels[j]
        if present_only and not fg.any():
            continue
        c = channels[j]
        pred = probs[n, c][idx]
        err = np.abs(fg.astype(np.float64) - pred)
        values[n, j], g = _lovasz_extension(err, fg, False)
        taken[n, j] = True
        grad[n, c, idx] += g * np.sign(pred - fg.astype(np.float64))
    total = 0.0
    for n in range(n_groups):
        count = taken[n].sum()
        if count > 0:
            total += values[n].sum() / count
            grad[n] /= count * n_groups
    return total / n_groups, grad


@njit(cache=True, parallel=True)
def _hinge_groups(logits, labels, ignore, use_ignore):
    """logits (N, P), labels (N, P) -> (mean over groups, grad); groups run in parallel."""
    n_groups = logits.shape[0]
    grad = np.zeros_like(logits)
    values = np.zeros(n_groups)
    for n in prange(n_groups):
        lab = labels[n]
        idx = np.nonzero(lab != ignore)[0] if use_ignore else np.arange(lab.shape[0])
        fg = lab[idx] == 1
        signs = 2.0 * fg.astype(np.float64) - 1.0
        err = 1.0 - logits[n][idx] * signs
        values[n], g = _lovasz_extension(err, fg, True)
        grad[n, idx] = -g * signs / n_groups
    return values.sum() / n_groups, grad


def lovasz_hinge(logits, labels, per_image: bool = True, ignore_index: int | None = None, grad: bool = False):
    """Binary Lovász hinge. logits (B, H, W) float, labels (B, H, W) in {0, 1} or ignore_index.

    Returns the loss (float), or ``(loss, d loss / d logits)`` with ``grad=True``.
    """
    fn = "lovasz_hinge"
    x = as_f64(fn, "logits", logits)
    lab = as_labels(fn, "labels", labels, allow_float=True)
    check_shapes(fn, [("logits", x, ("B", "H", "W")), ("labels", lab, ("B", "H", "W"))])
    check_labels(fn, "labels", lab, 2, ignore_index)
    n = x.shape[0] if per_image else 1
    value, g = _hinge_groups(x.reshape(n, -1), lab.reshape(n, -1), _ignore(ignore_index), ignore_index is not None)
    return (value, g.reshape(x.shape)) if grad else value


def lovasz_softmax(
    probas,
    labels,
    classes: str | Sequence[int] = "present",
    per_image: bool = False,
    ignore_index: int | None = None,
    from_logits: bool = False,
    grad: bool = False,
):
    """Lovász-Softmax. probas (B, C, H, W) (or (B, H, W) for C = 1), labels (B, H, W).

    Semantics of Berman's ``lovasz_softmax``; with ``C == 1`` the channel is the probability of label
    1 (or of label ``k`` for ``classes=[k]``). Nothing taken gives 0. Returns the loss, or
    ``(loss, d loss / d probas)`` (d/d logits with ``from_logits``) with ``grad=True``.
    """
    fn = "lovasz_softmax"
    x = as_f64(fn, "probas", probas)
    lab = as_labels(fn, "labels", labels)
    squeeze = x.ndim == 3
    if squeeze:
        x = x[:, None]
    check_shapes(fn, [("probas", x, ("B", "C", "H", "W")), ("labels", lab, ("B", "H", "W"))])
    b, c = x.shape[:2]
    if isinstance(classes, str):
        if classes not in ("present", "all"):
            raise InputError(f"{fn}: classes must be 'present', 'all' or a list of class ids; got {classes!r}")
        chosen = list(range(c))
    else:
        chosen = [int(k) for k in classes]
        if not chosen:
            raise InputError(f"{fn}: classes must not be an empty list")
    check_labels(fn, "labels", lab, max(c, 2), ignore_index)
    if not from_logits:
        check_unit_interval(fn, "probas", x, "probabilities in [0, 1]")
    if c == 1:
        if len(chosen) > 1 and not isinstance(classes, str):
            raise InputError(f"{fn}: with C == 1 (sigmoid form) classes must name one label; got {chosen}")
        channels, fg_labels = [0], [chosen[0] if not isinstance(classes, str) else 1]
    else:
        channels = fg_labels = [k for k in dict.fromkeys(chosen) if 0 <= k < c]  # a repeat averages the same
    p = (sigmoid(x) if c == 1 else softmax(x, 1)) if from_logits else x
    if per_image:
        pg, lg = p.reshape(b, c, -1), lab.reshape(b, -1)
    else:
        pg, lg = np.ascontiguousarray(p.transpose(1, 0, 2, 3)).reshape(1, c, -1), lab.reshape(1, -1)
    value, g = _softmax_groups(
        pg,
        lg,
        np.asarray(channels, dtype=np.int64),
        np.asarray(fg_labels, dtype=np.int64),
        classes == "present",
        _ignore(ignore_index),
        ignore_index is not None,
    )
    if not grad:
        return value
    if per_image:
        g = g.reshape(x.shape)
    else:
        g = g.reshape(c, b, *x.shape[2:]).transpose(1, 0, 2, 3)
    if from_logits:
        g = g * p * (1 - p) if c == 1 else softmax_backward(p, g, 1)
    return value, (g[:, 0] if squeeze else np.ascontiguousarray(g))


def _ignore(ignore_index: int | None) -> int:
    return -(2**62) if ignore_index is None else int(ignore_index)

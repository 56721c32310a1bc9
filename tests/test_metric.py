"""Center loss and ArcFace: independently written formulas, hand-computed values, definitional properties.

The catalog-generated tests (test_catalog_parity.py) run both losses three ways at several N, C, D,
on the edge inputs (cos θ = ±1, features equal to centers, absent classes, one sample) and on bad
input; this file ties the torch code and the reference to the published formulas.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import lossgraph as lg
from lossgraph import catalog
from lossgraph import reference as ref
from lossgraph._seeded import seeded_normal
from lossgraph.metric import SIN2_EPS

F = lg.functional


def _rand(seed, n, c, d, labels=None):
    rng = np.random.default_rng(seed)
    f = rng.standard_normal((n, d))
    w = rng.standard_normal((c, d))
    y = rng.integers(0, c, n) if labels is None else np.asarray(labels)
    return f, y, w


def _t(x):
    return torch.tensor(x)


# --- center loss -------------------------------------------------------------------------------


def test_center_hand_computed():
    f = np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]])
    y = np.array([0, 0, 1])
    c = np.zeros((3, 2))  # class 2 absent
    per = [0.5 * 1 / 2, 0.5 * 9 / 2, 0.5 * 4 / 1]  # λ/2 ‖f - c‖² / n_y, n = (2, 1)
    want = {"none": per, "mean": sum(per) / 3, "sum": sum(per)}
    for r, v in want.items():
        np.testing.assert_allclose(F.center_loss(_t(f), _t(y), _t(c), reduction=r).numpy(), v, rtol=1e-15)
        np.testing.assert_allclose(ref.center_loss(f, y, c, centers_from="input", reduction=r), v, rtol=1e-15)
    assert F.center_loss(_t(f), _t(y), _t(c), lambda_c=0.01).item() == pytest.approx(0.01 * 1.5, rel=1e-15)
    _, g = ref.center_loss(f, y, c, centers_from="input", reduction="sum", grad=True)
    np.testing.assert_allclose(g["features"], [[0.5, 0], [1.5, 0], [0, 2]])  # λ (f - c) / n
    np.testing.assert_allclose(g["centers"], [[-2, 0], [0, -2], [0, 0]])  # absent class: 0


def _center_loop(f, y, c, lam):
    """Per-sample center loss written as a plain loop over samples, counting classes in a dict."""
    counts: dict[int, int] = {}
    for k in y:
        counts[int(k)] = counts.get(int(k), 0) + 1
    return np.array([lam / 2 * sum((f[i, j] - c[y[i], j]) ** 2 for j in range(f.shape[1])) / counts[int(y[i])]
                     for i in range(len(y))])


def _center_torch_bincount(f, y, c, lam):
    """The same loss the eager way (bincount, fancy indexing), for autograd."""
    counts = torch.bincount(y, minlength=c.shape[0]).to(f.dtype)
    return lam / 2 * ((f - c[y]) ** 2).sum(1) / counts[y]


@pytest.mark.parametrize("n,c,d,lam", [(1, 1, 1, 1.0), (7, 3, 5, 0.5), (40, 12, 16, 0.003), (9, 20, 2, 2.0)])
def test_center_equals_loop_and_eager_formula(n, c, d, lam):
    f, y, w = _rand(n + c, n, c, d)
    want = _center_loop(f, y, w, lam)
    ft, wt = _t(f).requires_grad_(), _t(w).requires_grad_()
    eager = _center_torch_bincount(ft, _t(y), wt, lam)
    np.testing.assert_allclose(eager.detach().numpy(), want, rtol=1e-12)
    gf, gw = torch.autograd.grad(eager.mean(), [ft, wt])
    for r in ("none", "mean", "sum"):
        red = {"none": want, "mean": want.mean(), "sum": want.sum()}[r]
        got = F.center_loss(_t(f), _t(y), _t(w), lambda_c=lam, reduction=r)
        np.testing.assert_allclose(got.numpy(), red, rtol=1e-12)
        np.testing.assert_allclose(ref.center_loss(f, y, w, centers_from="input", lambda_c=lam, reduction=r), red, rtol=1e-12)
    _, g = ref.center_loss(f, y, w, centers_from="input", lambda_c=lam, grad=True)
    np.testing.assert_allclose(g["features"], gf.numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(g["centers"], gw.numpy(), rtol=1e-12, atol=1e-15)
    ft2, wt2 = _t(f).requires_grad_(), _t(w).requires_grad_()
    tf, tw = torch.autograd.grad(F.center_loss(ft2, _t(y), wt2, lambda_c=lam), [ft2, wt2])
    np.testing.assert_allclose(tf.numpy(), gf.numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(tw.numpy(), gw.numpy(), rtol=1e-12, atol=1e-15)


def test_center_features_at_centers_and_absent_classes():
    _, _, c = _rand(3, 1, 6, 4)
    y = np.array([1, 1, 4])  # classes 0, 2, 3, 5 absent
    value, g = ref.center_loss(c[y], y, c, centers_from="input", grad=True)
    assert value == 0.0 and not g["features"].any() and not g["centers"].any()
    ft = _t(c[y]).requires_grad_()
    out = F.center_loss(ft, _t(y), _t(c))
    (gt,) = torch.autograd.grad(out, [ft])
    assert out.item() == 0.0 and not gt.any()
    # a moved sample pulls only its own center; absent classes get no gradient
    f = c[y].copy()
    f[2] += 1.0
    _, g = ref.center_loss(f, y, c, centers_from="input", grad=True)
    assert np.flatnonzero(np.abs(g["centers"]).sum(1)).tolist() == [4]


def test_center_reference_gradient_matches_finite_differences():
    f, y, c = _rand(5, 6, 3, 4)
    _, g = ref.center_loss(f, y, c, centers_from="input", lambda_c=0.7, grad=True)
    h = 1e-6
    for name, x in (("features", f), ("centers", c)):
        fd = np.zeros_like(x)
        for i in np.ndindex(x.shape):
            e = np.zeros_like(x)
            e[i] = h
            args = {"features": f, "centers": c}
            plus = ref.center_loss(**{**args, name: x + e}, labels=y, centers_from="input", lambda_c=0.7)
            minus = ref.center_loss(**{**args, name: x - e}, labels=y, centers_from="input", lambda_c=0.7)
            fd[i] = (plus - minus) / (2 * h)
        np.testing.assert_allclose(g[name], fd, rtol=1e-6, atol=1e-9)


def test_center_parameter_is_seeded_trainable_and_equals_input_mode():
    m = lg.CenterLoss(num_classes=6, feat_dim=3, seed=7)
    np.testing.assert_array_equal(m.centers.detach().numpy(), seeded_normal(7, (6, 3)))
    assert not np.array_equal(seeded_normal(8, (6, 3)), seeded_normal(7, (6, 3)))
    assert list(m.state_dict()) == ["centers"]
    f, y, _ = _rand(2, 9, 6, 3)
    out = m(_t(f).float(), _t(y))
    out.backward()
    c = m.centers.detach().double().numpy()
    value, g = ref.center_loss(f.astype(np.float32), y, c, centers_from="input", grad=True)
    assert out.item() == pytest.approx(value, rel=1e-6)
    assert value == pytest.approx(ref.center_loss(f.astype(np.float32), y, num_classes=6, feat_dim=3, seed=7), rel=1e-15)
    np.testing.assert_allclose(m.centers.grad.numpy(), g["centers"], rtol=1e-5, atol=1e-7)
    with torch.no_grad():  # trained centers are what the module uses
        m.centers.mul_(0.5)
    assert m(_t(f).float(), _t(y)).item() == pytest.approx(
        ref.center_loss(f.astype(np.float32), y, 0.5 * c, centers_from="input"), rel=1e-6)


# --- ArcFace -----------------------------------------------------------------------------------


def _arcface_formula(f, y, w, s, m, easy_margin):
    """ArcFace from the paper, float64: θ = arccos, target logit s·cos(θ + m), insightface's fallback.

    insightface (and arcface-pytorch's ArcMarginProduct): where θ + m ≥ π (cos θ ≤ cos(π - m)) the
    target logit is s·(cos θ - m·sin m); with easy_margin, s·cos θ where cos θ ≤ 0.
    """
    fh = f / np.linalg.norm(f, axis=1, keepdims=True)
    wh = w / np.linalg.norm(w, axis=1, keepdims=True)
    cos = np.clip(fh @ wh.T, -1, 1)
    rows = np.arange(len(y))
    ct = cos[rows, y]
    theta = np.arccos(ct)
    if easy_margin:
        target = np.where(ct > 0, np.cos(theta + m), ct)
    else:
        target = np.where(theta + m < math.pi, np.cos(theta + m), ct - m * math.sin(m))
    z = s * cos
    z[rows, y] = s * target
    zmax = z.max(1, keepdims=True)
    lse = zmax[:, 0] + np.log(np.exp(z - zmax).sum(1))
    return lse - z[rows, y]


class _ArcMarginProduct(torch.nn.Module):
    """arcface-pytorch's ArcMarginProduct (ronghuaiyang), as published, + F.cross_entropy."""

    def __init__(self, weight, s, m, easy_margin):
        super().__init__()
        self.weight = torch.nn.Parameter(weight)
        self.s, self.m, self.easy_margin = s, m, easy_margin
        self.cos_m, self.sin_m = math.cos(m), math.sin(m)
        self.th, self.mm = math.cos(math.pi - m), math.sin(math.pi - m) * m

    def forward(self, x, label):
        cosine = torch.nn.functional.linear(torch.nn.functional.normalize(x), torch.nn.functional.normalize(self.weight))
        sine = torch.sqrt((1.0 - torch.pow(cosine, 2)).clamp(0, 1))
        phi = cosine * self.cos_m - sine * self.sin_m
        if self.easy_margin:
            phi = torch.where(cosine > 0, phi, cosine)
        else:
            phi = torch.where(cosine > self.th, phi, cosine - self.mm)
        one_hot = torch.zeros(cosine.size(), dtype=cosine.dtype)
        one_hot.scatter_(1, label.view(-1, 1).long(), 1)
        output = (one_hot * phi) + ((1.0 - one_hot) * cosine)
        return torch.nn.functional.cross_entropy(output * self.s, label, reduction="none")


CONFIGS = [(64.0, 0.5, False), (64.0, 0.5, True), (30.0, 0.35, False), (10.0, 1.2, False), (10.0, 1.2, True), (5.0, 0.0, False)]


@pytest.mark.parametrize("s,m,easy", CONFIGS)
@pytest.mark.parametrize("n,c,d", [(1, 1, 3), (7, 3, 5), (40, 12, 16)])
def test_arcface_equals_paper_formula_and_arcmarginproduct(s, m, easy, n, c, d):
    f, y, w = _rand(n * c + d, n, c, d)
    want = _arcface_formula(f, y, w, s, m, easy)
    kw = dict(s=s, m=m, easy_margin=easy)
    np.testing.assert_allclose(F.arcface(_t(f), _t(y), _t(w), reduction="none", **kw).numpy(), want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ref.arcface(f, y, w, weight_from="input", reduction="none", **kw), want, rtol=1e-10, atol=1e-12)
    # gradients: autograd through the published module vs the reference, and vs our torch code
    amp = _ArcMarginProduct(_t(w), s, m, easy)
    ft = _t(f).requires_grad_()
    loss = amp(ft, _t(y))
    np.testing.assert_allclose(loss.detach().numpy(), want, rtol=1e-10, atol=1e-12)
    gf, gw = torch.autograd.grad(loss.mean(), [ft, amp.weight])
    _, g = ref.arcface(f, y, w, weight_from="input", **kw, grad=True)
    np.testing.assert_allclose(g["features"], gf.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(g["weight"], gw.numpy(), rtol=1e-9, atol=1e-12)
    ft, wt = _t(f).requires_grad_(), _t(w).requires_grad_()
    tf, tw = torch.autograd.grad(F.arcface(ft, _t(y), wt, **kw), [ft, wt])
    np.testing.assert_allclose(tf.numpy(), gf.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(tw.numpy(), gw.numpy(), rtol=1e-9, atol=1e-12)


def test_arcface_hand_computed():
    # 2-D: weight rows along x and y; the feature at angle 0.3 rad from class 0 (its label)
    s, m = 4.0, 0.5
    f = np.array([[2 * math.cos(0.3), 2 * math.sin(0.3)]])
    w = np.array([[3.0, 0.0], [0.0, 0.5]])
    want = math.log(1 + math.exp(s * math.sin(0.3) - s * math.cos(0.3 + m)))
    assert F.arcface(_t(f), _t([0]), _t(w), s=s, m=m).item() == pytest.approx(want, rel=1e-12)
    assert ref.arcface(f, np.array([0]), w, weight_from="input", s=s, m=m) == pytest.approx(want, rel=1e-12)
    # labelled class 1 (θ = π/2 - 0.3 for the target): s·cos(θ + m) vs s·cos 0.3
    want1 = math.log(1 + math.exp(s * math.cos(0.3) - s * math.cos(math.pi / 2 - 0.3 + m)))
    assert ref.arcface(f, np.array([1]), w, weight_from="input", s=s, m=m) == pytest.approx(want1, rel=1e-12)
    # target at angle 2.9 rad (θ + m > π): insightface's fallback cos θ - m sin m; easy margin: cos θ
    g = np.array([[math.cos(2.9), math.sin(2.9)]])
    lin = s * (math.cos(2.9) - m * math.sin(m))
    want2 = math.log(1 + math.exp(s * math.sin(2.9) - lin))
    assert F.arcface(_t(g), _t([0]), _t(w), s=s, m=m).item() == pytest.approx(want2, rel=1e-12)
    want3 = math.log(1 + math.exp(s * math.sin(2.9) - s * math.cos(2.9)))
    assert F.arcface(_t(g), _t([0]), _t(w), s=s, m=m, easy_margin=True).item() == pytest.approx(want3, rel=1e-12)


def test_arcface_m0_is_normalised_softmax_and_scale_invariant():
    f, y, w = _rand(4, 11, 6, 7)
    fh = f / np.linalg.norm(f, axis=1, keepdims=True)
    wh = w / np.linalg.norm(w, axis=1, keepdims=True)
    want = torch.nn.functional.cross_entropy(_t(10 * fh @ wh.T), _t(y)).item()
    assert ref.arcface(f, y, w, weight_from="input", s=10, m=0) == pytest.approx(want, rel=1e-12)
    assert F.arcface(_t(f), _t(y), _t(w), s=10, m=0).item() == pytest.approx(want, rel=1e-12)
    # only directions matter: rescaling feature rows and weight rows changes nothing
    a = np.random.default_rng(0).uniform(0.1, 10, (11, 1))
    b = np.random.default_rng(1).uniform(0.1, 10, (6, 1))
    assert ref.arcface(a * f, y, b * w, weight_from="input") == pytest.approx(ref.arcface(f, y, w, weight_from="input"), rel=1e-12)
    # the margin only penalises: loss with m > 0 exceeds loss with m = 0 when every target θ + m < π
    assert ref.arcface(f, y, w, weight_from="input", s=10, m=0.3) > want


@pytest.mark.parametrize("easy", [False, True])
def test_arcface_cos_plus_minus_one(easy):
    """D = 1: every cos θ is exactly ±1 in float32. Values follow the documented floor
    ``sin θ = sqrt(SIN2_EPS)``; gradients are finite and 0 up to float32 rounding (exactly 0 in float64)."""
    s, m = 64.0, 0.5
    f = np.array([[2.0], [-3.0], [0.5], [1.0]], dtype=np.float32)
    w = np.array([[1.5], [-1.0], [4.0]], dtype=np.float32)
    y = np.array([0, 0, 1, 2])
    cos = np.sign(f).astype(np.float64) @ np.sign(w).T  # ±1
    ct = cos[np.arange(4), y]
    phi_plus = math.cos(m) - math.sqrt(SIN2_EPS) * math.sin(m)
    phi_minus = -1.0 if easy else -1.0 - m * math.sin(m)
    z = s * cos
    z[np.arange(4), y] = s * np.where(ct > 0, phi_plus, phi_minus)
    want = np.log(np.exp(z).sum(1)) - z[np.arange(4), y]
    value, g = ref.arcface(f, y, w, weight_from="input", s=s, m=m, easy_margin=easy, reduction="none", grad=True)
    np.testing.assert_allclose(value, want, rtol=1e-12)
    assert not g["features"].any() and not g["weight"].any()
    ft, wt = _t(f).requires_grad_(), _t(w).requires_grad_()
    out = F.arcface(ft, _t(y), wt, s=s, m=m, easy_margin=easy, reduction="none")
    np.testing.assert_allclose(out.detach().numpy(), want, rtol=1e-6)
    gf, gw = torch.autograd.grad(out.sum(), [ft, wt])
    # float32 rounding of x·rsqrt(x²) leaves ~1e-7 relative of the upstream gradient (≤ s per sample)
    assert torch.isfinite(gf).all() and torch.isfinite(gw).all()
    assert gf.abs().max() < 1e-6 * s * 4 and gw.abs().max() < 1e-6 * s * 4


def test_arcface_reference_gradient_matches_finite_differences():
    f, y, w = _rand(6, 5, 4, 3)
    kw = dict(weight_from="input", s=8.0, m=0.4)
    _, g = ref.arcface(f, y, w, **kw, grad=True)
    h = 1e-6
    for name, x in (("features", f), ("weight", w)):
        fd = np.zeros_like(x)
        for i in np.ndindex(x.shape):
            e = np.zeros_like(x)
            e[i] = h
            args = {"features": f, "weight": w}
            fd[i] = (ref.arcface(**{**args, name: x + e}, labels=y, **kw) - ref.arcface(**{**args, name: x - e}, labels=y, **kw)) / (2 * h)
        np.testing.assert_allclose(g[name], fd, rtol=1e-6, atol=1e-8)


def test_arcface_parameter_equals_input_mode_and_trains():
    m = lg.ArcFace(num_classes=5, feat_dim=4, seed=3, s=16.0)
    np.testing.assert_array_equal(m.weight.detach().numpy(), seeded_normal(3, (5, 4)))
    f, y, _ = _rand(1, 8, 5, 4)
    f32 = f.astype(np.float32)
    out = m(_t(f32), _t(y))
    out.backward()
    value, g = ref.arcface(f32, y, seeded_normal(3, (5, 4)), weight_from="input", s=16.0, grad=True)
    assert out.item() == pytest.approx(value, rel=1e-5)
    assert value == pytest.approx(ref.arcface(f32, y, num_classes=5, feat_dim=4, seed=3, s=16.0), rel=1e-15)
    np.testing.assert_allclose(m.weight.grad.numpy(), g["weight"], rtol=1e-4, atol=1e-4 * np.abs(g["weight"]).max())


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 12), c=st.integers(1, 9), d=st.integers(1, 10), seed=st.integers(0, 2**31),
    s=st.floats(0.5, 64.0), m=st.floats(0.0, 1.5), easy=st.booleans(), lam=st.floats(1e-3, 10.0),
)
def test_float64_torch_equals_reference_on_random_shapes(n, c, d, seed, s, m, easy, lam):
    """Any N, C, D (D = 1 included): torch in float64 equals the reference, value and gradients."""
    f, y, w = _rand(seed, n, c, d)
    for fn, kw in ((F.center_loss, {"lambda_c": lam}), (F.arcface, {"s": s, "m": m, "easy_margin": easy})):
        ft, wt = _t(f).requires_grad_(), _t(w).requires_grad_()
        out = fn(ft, _t(y), wt, **kw, reduction="sum")
        gf, gw = torch.autograd.grad(out, [ft, wt])
        mode = {"centers_from" if fn is F.center_loss else "weight_from": "input"}
        value, g = getattr(ref, fn.__name__)(f, y, w, **kw, **mode, reduction="sum", grad=True)
        assert out.item() == pytest.approx(value, rel=1e-10, abs=1e-12)
        gw_ref = g["centers" if fn is F.center_loss else "weight"]
        scale = max(np.abs(g["features"]).max(), np.abs(gw_ref).max(), 1.0)
        np.testing.assert_allclose(gf.numpy(), g["features"], rtol=1e-8, atol=1e-10 * scale)
        np.testing.assert_allclose(gw.numpy(), gw_ref, rtol=1e-8, atol=1e-10 * scale)


# --- bad input and graphs ----------------------------------------------------------------------


@pytest.mark.parametrize("fn", ["center_loss", "arcface"])
def test_bad_inputs(fn):
    torch_fn, ref_fn = getattr(F, fn), getattr(ref, fn)
    what = "centers" if fn == "center_loss" else "weight"
    mode = {f"{what}_from": "input"}
    f, y, w = _rand(0, 6, 4, 3)
    cases = [
        ((f, np.array([0, 1, 2, 3, 4, 0]), w), ValueError, r"labels must be in \[0, 4\); got values in \[0, 4\]"),
        ((f, np.array([0, -1, 2, 3, 1, 0]), w), ValueError, r"labels must be in \[0, 4\); got values in \[-1, 3\]"),
        ((f, y, w[:, :2]), ValueError, rf"{what} must have shape \(C, D\) matching features \(N, D\); got \(4, 2\) and \(6, 3\)"),
        ((f, y[:5], w), ValueError, r"labels must have shape \(N,\) matching features"),
        ((f, y.astype(np.float32), w), TypeError, "labels must be an integer"),
        ((f, y, w.astype(np.int64)), TypeError, f"{what} must be a float"),
        ((f.astype(np.int64), y, w), TypeError, "features must be a float"),
    ]
    for args, exc, msg in cases:
        with pytest.raises(exc, match=f"^{fn}: {msg}"):
            torch_fn(*[_t(a) for a in args])
        with pytest.raises(exc, match=f"^{fn}: {msg}"):
            ref_fn(*args, **mode)
    module = catalog.get(fn).build()  # parameter mode, (10, 8)
    with pytest.raises(ValueError, match=rf"^{fn}: features must have shape \(N, D\) matching {what} \(C, D\); got \(6, 3\) and \(10, 8\)"):
        module(_t(f).float(), _t(y))
    with pytest.raises(ValueError, match=rf"^{fn}: features must have shape \(N, D\) matching {what}"):
        ref_fn(f, y)
    with pytest.raises(TypeError, match=f"{what} is a parameter"):
        module(_t(f).float(), _t(y), _t(w).float())
    with pytest.raises(TypeError, match=f"needs the {what}"):
        catalog.get(fn).build(**mode)(_t(f).float(), _t(y))
    with pytest.raises(ValueError, match=f"{what}_from must be one of"):
        catalog.get(fn).build(**{f"{what}_from": "buffer"})
    with pytest.raises(ValueError, match="reduction must be one of"):
        torch_fn(_t(f), _t(y), _t(w), reduction="avg")


FORBIDDEN_OPS = {"Acos", "Atan", "SoftmaxCrossEntropyLoss", "NegativeLogLikelihoodLoss", "OneHot"}


@pytest.mark.parametrize("name", ["center_loss", "arcface"])
def test_graphs_export_friendly(name, graphs):
    """No Acos/SoftmaxCrossEntropyLoss/OneHot nodes (no CUDA kernels, no dynamic-C one_hot) in any graph;
    in parameter mode the class tensor is an initializer, not a graph input."""
    spec = catalog.get(name)
    for case in spec.cases:
        params = spec.resolve(case.params)
        for with_grad in (False, True):
            model = onnx.load(graphs.get(spec, params, case.export_dims, with_grad))
            ops = {n.op_type for n in model.graph.node} | {n.op_type for fn in model.functions for n in fn.node}
            assert not ops & FORBIDDEN_OPS, ops & FORBIDDEN_OPS
            inputs = [i.name for i in model.graph.input]
            assert inputs == [i.name for i in spec.input_specs(params)]
            if params.get("centers_from") == "parameter":
                seeded = seeded_normal(params["seed"], (params["num_classes"], params["feat_dim"]))
                inits = [onnx.numpy_helper.to_array(t) for t in model.graph.initializer]
                assert any(a.shape == seeded.shape and np.array_equal(a, seeded) for a in inits)

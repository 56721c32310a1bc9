"""Lovász family: equal to the source's loop code for every option, tied to the definition by properties."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import lossgraph as lg
from lossgraph import reference as ref
from lossgraph.baselines import lovasz as source

F = lg.functional
def _probas(shape, rng, logits=False):
    z = rng.standard_normal(shape) * 2
    if logits:
        return z
    if shape[1] == 1:
        return 1 / (1 + np.exp(-z))
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _labels(shape, c, rng, ignore=None, frac=0.2):
    y = rng.integers(0, c, size=shape)
    if ignore is not None:
        y[rng.random(shape) < frac] = ignore
    return y


SOFTMAX_OPTIONS = list(
    itertools.product(["present", "all", [0, 2], [1]], [False, True], [None, 255], [False, True])
)


@pytest.mark.parametrize("classes,per_image,ignore,from_logits", SOFTMAX_OPTIONS)
@pytest.mark.parametrize("shape", [(3, 4, 7, 5), (1, 3, 1, 1), (2, 5, 9, 13)])
def test_softmax_equals_source_loops(shape, classes, per_image, ignore, from_logits, rng):
    """Vectorised torch (float64 and float32) equals the per-image/per-class loop code, value and grad."""
    p = torch.tensor(_probas(shape, rng, logits=from_logits), requires_grad=True)
    y = torch.tensor(_labels((shape[0], *shape[2:]), shape[1], rng, ignore))
    kw = dict(classes=classes, per_image=per_image, ignore_index=ignore, from_logits=from_logits)
    want = source.lovasz_softmax(p, y, **kw)
    (g_want,) = torch.autograd.grad(want, p)
    got = F.lovasz_softmax(p, y, **kw)
    (g_got,) = torch.autograd.grad(got, p)
    np.testing.assert_allclose(got.item(), want.item(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(g_got.numpy(), g_want.numpy(), rtol=1e-10, atol=1e-12)
    got32 = F.lovasz_softmax(p.detach().float(), y, **kw)
    np.testing.assert_allclose(got32.item(), want.item(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ref.lovasz_softmax(p.detach().numpy(), y.numpy(), **kw), want.item(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("per_image,ignore", list(itertools.product([True, False], [None, 255])))
@pytest.mark.parametrize("shape", [(3, 7, 5), (1, 1, 1), (4, 9, 13)])
def test_hinge_equals_source_loops(shape, per_image, ignore, rng):
    x = torch.tensor(rng.standard_normal(shape) * 3, requires_grad=True)
    y = torch.tensor(_labels(shape, 2, rng, ignore))
    want = source.lovasz_hinge(x, y, per_image=per_image, ignore_index=ignore)
    (g_want,) = torch.autograd.grad(want, x)
    got = F.lovasz_hinge(x, y, per_image=per_image, ignore_index=ignore)
    (g_got,) = torch.autograd.grad(got, x)
    np.testing.assert_allclose(got.item(), want.item(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(g_got.numpy(), g_want.numpy(), rtol=1e-10, atol=1e-12)
    value, grad = ref.lovasz_hinge(x.detach().numpy(), y.numpy(), per_image=per_image, ignore_index=ignore, grad=True)
    np.testing.assert_allclose(value, want.item(), rtol=1e-12)
    np.testing.assert_allclose(grad, g_want.numpy(), rtol=1e-10, atol=1e-12)


def test_ties_in_the_sort_do_not_change_the_value():
    """Errors quantised to 3 levels (many exact ties): torch, reference and loops agree on the value."""
    rng = np.random.default_rng(5)
    p = rng.choice([0.1, 0.5, 0.9], size=(2, 3, 6, 6))
    y = _labels((2, 6, 6), 3, rng, ignore=255)
    for per_image in (False, True):
        kw = dict(per_image=per_image, ignore_index=255, classes="all")
        want = source.lovasz_softmax(torch.tensor(p), torch.tensor(y), **kw).item()
        assert F.lovasz_softmax(torch.tensor(p), torch.tensor(y), **kw).item() == pytest.approx(want, rel=1e-12)
        assert F.lovasz_softmax(torch.tensor(p, dtype=torch.float32), torch.tensor(y), **kw).item() == pytest.approx(want, rel=1e-6)
        assert ref.lovasz_softmax(p, y, **kw) == pytest.approx(want, rel=1e-12)
    x = rng.choice([-1.0, 0.0, 2.0], size=(3, 5, 5))
    yb = _labels((3, 5, 5), 2, rng)
    want = source.lovasz_hinge(torch.tensor(x), torch.tensor(yb)).item()
    assert F.lovasz_hinge(torch.tensor(x), torch.tensor(yb)).item() == pytest.approx(want, rel=1e-12)
    assert ref.lovasz_hinge(x, yb) == pytest.approx(want, rel=1e-12)


def test_all_pixels_ignored_gives_zero_not_nan(rng):
    p = torch.tensor(_probas((2, 3, 4, 4), rng), requires_grad=True)
    y = torch.full((2, 4, 4), 255)
    for kw in (dict(per_image=True), dict(per_image=False), dict(classes="all"), dict(classes=[1])):
        v = F.lovasz_softmax(p, y, ignore_index=255, **kw)
        (g,) = torch.autograd.grad(v, p)
        assert v.item() == 0.0 and torch.all(g == 0)
        assert ref.lovasz_softmax(p.detach().numpy(), y.numpy(), ignore_index=255, **kw) == 0.0
    x = torch.tensor(rng.standard_normal((2, 4, 4)), requires_grad=True)
    v = F.lovasz_hinge(x, y, ignore_index=255)
    assert v.item() == 0.0 and torch.all(torch.autograd.grad(v, x)[0] == 0)


def test_one_image_ignored_counts_as_zero_in_the_mean(rng):
    """per_image: an all-ignored image contributes 0 and still counts in the mean over images."""
    p = _probas((2, 3, 5, 5), rng)
    y = _labels((2, 5, 5), 3, rng)
    y_ign = y.copy()
    y_ign[1] = 255
    only_first = ref.lovasz_softmax(p[:1], y[:1], per_image=True)
    got = F.lovasz_softmax(torch.tensor(p), torch.tensor(y_ign), per_image=True, ignore_index=255).item()
    assert got == pytest.approx(only_first / 2, rel=1e-12)


def test_classes_present_skips_absent_and_all_counts_them(rng):
    """Hand-built: class 2 absent. 'present' averages classes 0, 1; 'all' adds class 2 with G = 0."""
    p = _probas((1, 3, 4, 4), rng)
    y = np.zeros((1, 4, 4), dtype=np.int64)
    y[0, :2] = 1
    per_class = [ref.lovasz_softmax(p, y, classes=[c]) for c in range(3)]
    assert ref.lovasz_softmax(p, y, classes="present") == pytest.approx(np.mean(per_class[:2]), rel=1e-12)
    assert ref.lovasz_softmax(p, y, classes="all") == pytest.approx(np.mean(per_class), rel=1e-12)
    # an absent class: the Jaccard loss of any mistake is 1, so its extension is the largest error
    assert per_class[2] == pytest.approx(p[0, 2].max(), rel=1e-12)
    t = torch.tensor(p)
    for classes in ("present", "all", [2]):
        assert F.lovasz_softmax(t, torch.tensor(y), classes=classes).item() == pytest.approx(
            ref.lovasz_softmax(p, y, classes=classes), rel=1e-12
        )


def _jaccard_loss(pred_mask, gt_mask):
    union = np.logical_or(pred_mask, gt_mask).sum()
    return 1.0 - np.logical_and(pred_mask, gt_mask).sum() / union if union else 0.0


@pytest.mark.parametrize("seed", range(5))
def test_binary_predictions_equal_one_minus_jaccard(seed):
    """On one-hot predictions the Lovász-Softmax equals the mean over present classes of 1 - IoU."""
    rng = np.random.default_rng(seed)
    c = 4
    y = rng.integers(0, c, size=(2, 6, 7))
    pred = rng.integers(0, c, size=(2, 6, 7))
    onehot = (pred[:, None] == np.arange(c)[None, :, None, None]).astype(np.float64)
    present = [k for k in range(c) if (y == k).any()]
    want = np.mean([_jaccard_loss(pred == k, y == k) for k in present])
    assert ref.lovasz_softmax(onehot, y) == pytest.approx(want, rel=1e-12)
    assert F.lovasz_softmax(torch.tensor(onehot), torch.tensor(y)).item() == pytest.approx(want, rel=1e-12)
    # per image, with the hinge on binary logits of ±1 (errors 0 or 2): 2 x (1 - IoU)
    yb, pb = (y[0] % 2), (pred[0] % 2)
    logits = np.where(pb == 1, 1.0, -1.0)[None]
    assert ref.lovasz_hinge(logits, yb[None]) == pytest.approx(2 * _jaccard_loss(pb == 1, yb == 1), rel=1e-12)


def _lovasz_extension_brute_force(errors, fg):
    """Choquet integral ∫ Δ({i : e_i >= t}) dt with Δ(M) = |M| / |G ∪ M| (Jaccard loss of the set M)."""
    levels = np.unique(np.concatenate([[0.0], errors]))
    total = 0.0
    for lo, hi in zip(levels[:-1], levels[1:]):
        m = errors >= hi
        total += (hi - lo) * m.sum() / (fg.sum() + (m & ~fg).sum())
    return total


@pytest.mark.parametrize("seed", range(20))
def test_reference_equals_brute_force_lovasz_extension(seed):
    """Tiny inputs: the reference equals the Lovász extension evaluated as a threshold integral."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 8))
    p = _probas((1, 2, 1, n), rng)
    y = rng.integers(0, 2, size=(1, 1, n))
    for c in range(2):
        fg = (y[0, 0] == c)
        e = np.abs(fg - p[0, c, 0])
        want = _lovasz_extension_brute_force(e, fg)
        assert ref.lovasz_softmax(p, y, classes=[c]) == pytest.approx(want, rel=1e-12, abs=1e-15)


def test_sigmoid_form_c1(rng):
    """C == 1: the channel is P(label 1); classes=[k] makes label k the foreground (reference code)."""
    p = _probas((2, 1, 5, 5), rng)
    y = _labels((2, 5, 5), 2, rng)
    t, ty = torch.tensor(p), torch.tensor(y)
    fg_err = np.abs((y == 1) - p[:, 0])
    want = ref.lovasz_softmax(np.stack([1 - p[:, 0], p[:, 0]], 1), y, classes=[1])
    assert F.lovasz_softmax(t, ty).item() == pytest.approx(want, rel=1e-12)
    assert F.lovasz_softmax(t[:, 0], ty).item() == pytest.approx(want, rel=1e-12)  # (B, H, W) input
    assert ref.lovasz_softmax(p, y) == pytest.approx(want, rel=1e-12)
    assert fg_err.max() <= 1
    assert F.lovasz_softmax(t, ty, classes=[0]).item() == pytest.approx(
        source.lovasz_softmax(t, ty, classes=[0]).item(), rel=1e-12
    )
    logits = np.log(p / (1 - p))
    assert F.lovasz_softmax(torch.tensor(logits), ty, from_logits=True).item() == pytest.approx(want, rel=1e-10)
    with pytest.raises(ValueError, match="one label"):
        F.lovasz_softmax(t, ty, classes=[0, 1])


def test_float32_accuracy_at_262k_pixels():
    """Closed-form Jaccard increments keep float32 within 1e-6 of float64 at 4x256x256 pixels, and
    the increments themselves stay far closer to the exact ones than differences of 1 - I/U (the
    source's lovasz_grad) do. (The loss values of both round to the same float32 here: the drift of
    the differences mostly cancels in the sum, so the weights are where it shows.)"""
    rng = np.random.default_rng(0)
    p = _probas((4, 2, 256, 256), rng)
    y = rng.integers(0, 2, size=(4, 256, 256))
    want = ref.lovasz_softmax(p, y)
    got = F.lovasz_softmax(torch.tensor(p, dtype=torch.float32), torch.tensor(y)).item()
    assert abs(got - want) < 1e-6 * want

    fg = torch.tensor(rng.random(262144) < 0.3)
    exact, total = lg.lovasz.lovasz_weights(fg, torch.float64)
    ours = lg.lovasz.lovasz_weights(fg, torch.float32)[0].double()
    assert total.tolist() == [int(fg.sum())]
    loops = source.lovasz_grad(fg.float()).double()
    err_ours, err_loops = (ours - exact).abs().max().item(), (loops - exact).abs().max().item()
    assert err_ours < 1e-12 and err_loops > 1e4 * err_ours
    # and the float64 closed form is the float64 difference formula (g_1 = 1 only when G = 0)
    assert torch.allclose(exact, source.lovasz_grad(fg.double()), rtol=0, atol=1e-15)


def test_bad_parameters():
    p, y = torch.rand(1, 3, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long)
    with pytest.raises(ValueError, match="classes must be"):
        F.lovasz_softmax(p, y, classes="some")
    with pytest.raises(ValueError, match="empty"):
        F.lovasz_softmax(p, y, classes=[])
    with pytest.raises(ValueError, match=r"labels must have shape \(B, H, W\) matching probas \(B, C, H, W\); got \(1, 3, 2\) and \(1, 3, 2, 2\)"):
        F.lovasz_softmax(p, torch.zeros(1, 3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"labels must be in \[0, 2\) or ignore_index=255; got values in \[0, 7\]"):
        F.lovasz_hinge(torch.rand(1, 2, 2), torch.tensor([[[0, 7], [255, 1]]]), ignore_index=255)
    with pytest.raises(ValueError, match="labels must hold whole class ids; got 0.5"):  # 0/1 floats are accepted
        F.lovasz_hinge(torch.rand(1, 2, 2), torch.full((1, 2, 2), 0.5))
    with pytest.raises(TypeError, match="labels must be an integer or 0/1 float tensor; got dtype bool"):
        F.lovasz_hinge(torch.rand(1, 2, 2), torch.ones(1, 2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="classes must be"):
        ref.lovasz_softmax(p.numpy(), y.numpy(), classes="some")


def test_graph_sorts_once():
    """Vectorised over images and classes: the exported graph has exactly one TopK (sort) node,
    whatever per_image and classes are."""
    import onnx

    from lossgraph.export import to_onnx

    spec = lg.catalog.get("lovasz_softmax")
    x = spec.example_inputs({"B": 2, "C": 4, "H": 6, "W": 7})
    model = to_onnx(spec.build(per_image=True, classes="all", ignore_index=255), x)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("TopK") == 1, ops
    assert not {"Loop", "If", "Scan"} & set(ops)
    assert isinstance(model, onnx.ModelProto)

"""Box losses: hand-computed boxes, torchvision's published formulas written out here, degenerate
boxes, the Atan-free atan2, ltrb forms, reference gradients against finite differences.

torchvision cannot be imported beside the pinned CPU torch (the registry's torchvision 0.28.0 is a
CUDA build: ``libc10_cuda.so`` is missing), so the box-loss claims are tested against its published
formulas, written out below from ``torchvision/ops/{giou,diou,ciou}_loss.py`` and ``_utils.py`` of
pytorch/vision (``_loss_inter_union``, ``_diou_iou_loss``), not against torchvision itself."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
import torch

import lossgraph as lg
from lossgraph import catalog
from lossgraph import reference as ref
from lossgraph.boxes import atan2, ltrb_iou_loss
from lossgraph.catalog.boxes import random_boxes
from lossgraph.reference.boxes import ROW_BLOCK

F = lg.functional
KINDS = ["box_iou", "giou", "diou", "ciou"]


def _t(x):
    return torch.tensor(np.asarray(x, dtype=np.float64))


# --- hand-computed -------------------------------------------------------------------------------


def test_hand_computed_squares():
    # a = [0,2]², b = [1,3]²: I = 1, U = 7, enclosing 3x3 (C = 9, c² = 18), centers 1 apart in x and y
    a, b = [[0.0, 0, 2, 2]], [[1.0, 1, 3, 3]]
    want = {"box_iou": 1 / 7, "giou": 1 / 7 - 2 / 9, "diou": 1 / 7 - 2 / 18, "ciou": 1 / 7 - 2 / 18}  # same aspect: v = 0
    for name, w in want.items():
        fn = getattr(F, name)
        assert fn(_t(a), _t(b), output="value", eps=0.0).item() == pytest.approx(w, rel=1e-12), name
        assert fn(_t(a), _t(b), eps=0.0).item() == pytest.approx(1 - w, rel=1e-12), name
        assert getattr(ref, name)(np.array(a), np.array(b), output="value", eps=0.0)[0] == pytest.approx(w, rel=1e-12)


def test_hand_computed_ciou_aspect_term():
    # a = 2x1 at the origin, b = 1x2: I = 1, U = 3, centers (1, .5) and (.5, 1): ρ² = .5, enclosing 2x2: c² = 8
    a, b = [[0.0, 0, 2, 1]], [[0.0, 0, 1, 2]]
    iou = 1 / 3
    v = 4 / math.pi**2 * (math.atan(1 / 2) - math.atan(2 / 1)) ** 2
    alpha = v / (1 - iou + v)
    want = iou - 0.5 / 8 - alpha * v
    assert F.ciou(_t(a), _t(b), output="value", eps=0.0).item() == pytest.approx(want, rel=1e-12)
    assert ref.ciou(np.array(a), np.array(b), output="value", eps=0.0)[0] == pytest.approx(want, rel=1e-12)


def test_identical_and_disjoint_boxes():
    a = np.array([[0.0, 0, 2, 3], [0.0, 0, 1, 1]])
    b = np.array([[0.0, 0, 2, 3], [3.0, 0, 4, 1]])  # identical; disjoint 1x1 boxes 2 apart in x
    for name in KINDS:
        v = getattr(F, name)(_t(a), _t(b), output="value", eps=0.0).numpy()
        assert v[0] == pytest.approx(1.0, rel=1e-12), name
    np.testing.assert_allclose(F.box_iou(_t(a), _t(b), output="value")[1].item(), 0.0)
    # enclosing 4x1: GIoU = 0 - (4 - 2)/4; DIoU = 0 - 3²/(4² + 1²)
    assert F.giou(_t(a), _t(b), output="value", eps=0.0)[1].item() == pytest.approx(-0.5, rel=1e-12)
    assert F.diou(_t(a), _t(b), output="value", eps=0.0)[1].item() == pytest.approx(-9 / 17, rel=1e-12)


@pytest.mark.parametrize("name", KINDS)
def test_degenerate_boxes_are_finite_in_float32(name):
    spec = catalog.get(name)
    for params in ({}, {"pairwise": True}):
        for inputs in spec.edges(spec.resolve(params)).values():
            a = torch.tensor(inputs["boxes1"], requires_grad=True)
            b = torch.tensor(inputs["boxes2"], requires_grad=True)
            v = getattr(F, name)(a, b, **params)
            ga, gb = torch.autograd.grad(v.sum(), [a, b])
            assert torch.isfinite(v).all() and torch.isfinite(ga).all() and torch.isfinite(gb).all()


# --- torchvision's published formulas, written out independently (not torchvision itself) ---------------------------------------------


def _tv_inter_union(b1, b2):
    x1, y1, x2, y2 = b1.unbind(-1)
    x1g, y1g, x2g, y2g = b2.unbind(-1)
    xk1, yk1 = torch.max(x1, x1g), torch.max(y1, y1g)
    xk2, yk2 = torch.min(x2, x2g), torch.min(y2, y2g)
    mask = (yk2 > yk1) & (xk2 > xk1)
    inter = torch.where(mask, (xk2 - xk1) * (yk2 - yk1), torch.zeros_like(x1))
    union = (x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - inter
    return inter, union


def _tv_loss(name, b1, b2, eps=1e-7):
    """torchvision.ops.{generalized,distance,complete}_box_iou_loss (reduction='none'), and 1 - IoU."""
    inter, union = _tv_inter_union(b1, b2)
    iou = inter / (union + eps)
    x1, y1, x2, y2 = b1.unbind(-1)
    x1g, y1g, x2g, y2g = b2.unbind(-1)
    xc1, yc1 = torch.min(x1, x1g), torch.min(y1, y1g)
    xc2, yc2 = torch.max(x2, x2g), torch.max(y2, y2g)
    if name == "box_iou":
        return 1 - iou
    if name == "giou":
        area_c = (xc2 - xc1) * (yc2 - yc1)
        return 1 - (iou - (area_c - union) / (area_c + eps))
    diag = (xc2 - xc1) ** 2 + (yc2 - yc1) ** 2 + eps
    cdist = ((x2 + x1) / 2 - (x1g + x2g) / 2) ** 2 + ((y2 + y1) / 2 - (y1g + y2g) / 2) ** 2
    loss = 1 - iou + cdist / diag
    if name == "diou":
        return loss
    v = (4 / torch.pi**2) * torch.pow(torch.atan((x2g - x1g) / (y2g - y1g)) - torch.atan((x2 - x1) / (y2 - y1)), 2)
    with torch.no_grad():
        alpha = v / (1 - iou + v + eps)
    return loss + alpha * v


@pytest.mark.parametrize("name", KINDS)
@pytest.mark.parametrize("pairwise", [False, True])
def test_equals_torchvision_formulas_value_and_gradient(name, pairwise):
    rng = np.random.default_rng(5)
    a = _t(random_boxes(rng, 23)).requires_grad_(True)
    b = _t(random_boxes(rng, 23 if not pairwise else 17)).requires_grad_(True)
    ours = getattr(F, name)(a, b, pairwise=pairwise)
    want = _tv_loss(name, a[:, None] if pairwise else a, b[None] if pairwise else b)
    np.testing.assert_allclose(ours.detach().numpy(), want.detach().numpy(), rtol=1e-12, atol=1e-14)
    w = torch.tensor(rng.standard_normal(want.shape))
    g_ours = torch.autograd.grad((ours * w).sum(), [a, b])
    g_want = torch.autograd.grad((want * w).sum(), [a, b])
    for x, y in zip(g_ours, g_want):
        np.testing.assert_allclose(x.numpy(), y.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", KINDS)
def test_pairwise_diagonal_is_aligned_and_reference_agrees(name):
    rng = np.random.default_rng(6)
    a, b = random_boxes(rng, 9).astype(np.float64), random_boxes(rng, 9).astype(np.float64)
    fn, rfn = getattr(F, name), getattr(ref, name)
    pair = fn(_t(a), _t(b), pairwise=True, output="value").numpy()
    np.testing.assert_allclose(np.diag(pair), fn(_t(a), _t(b), output="value").numpy(), rtol=1e-14)
    np.testing.assert_allclose(rfn(a, b, pairwise=True, output="value"), pair, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", KINDS)
@pytest.mark.parametrize("pairwise", [False, True])
def test_reference_gradient_matches_finite_differences(name, pairwise):
    rng = np.random.default_rng(7)
    a, b = random_boxes(rng, 4).astype(np.float64), random_boxes(rng, 4 if not pairwise else 3).astype(np.float64)
    a[1] = b[1] + 0.3  # an overlapping pair
    fn = getattr(ref, name)
    _, g = fn(a, b, pairwise=pairwise, reduction="sum", grad=True)
    h = 1e-6
    for key, x in (("boxes1", a), ("boxes2", b)):
        fd = np.zeros_like(x)
        for i in np.ndindex(x.shape):
            e = np.zeros_like(x)
            e[i] = h
            args = (x + e, b) if key == "boxes1" else (a, x + e)
            args_m = (x - e, b) if key == "boxes1" else (a, x - e)
            if name == "ciou":  # α is a constant of the gradient: hold it at the unperturbed boxes
                fd[i] = _ciou_fixed_alpha(*args, a, b, pairwise) - _ciou_fixed_alpha(*args_m, a, b, pairwise)
            else:
                fd[i] = fn(*args, pairwise=pairwise, reduction="sum") - fn(*args_m, pairwise=pairwise, reduction="sum")
        np.testing.assert_allclose(g[key], fd / (2 * h), rtol=1e-5, atol=1e-8)


def _ciou_fixed_alpha(a, b, a0, b0, pairwise):
    """Σ (1 - CIoU) with α computed at (a0, b0), from the reference's DIoU and np.arctan."""
    diou = ref.diou(a, b, pairwise=pairwise, output="value")
    iou0 = ref.box_iou(a0, b0, pairwise=pairwise, output="value")

    def theta(x):
        return np.arctan((x[:, 2] - x[:, 0]) / (x[:, 3] - x[:, 1]))

    def v_of(p, q):
        tp, tq = theta(p), theta(q)
        d = tq[None, :] - tp[:, None] if pairwise else tq - tp
        return 4 / np.pi**2 * d**2

    v0 = v_of(a0, b0)
    alpha = v0 / (1 - iou0 + v0 + 1e-7)
    return float((1 - diou + alpha * v_of(a, b)).sum())


@pytest.mark.parametrize("name", KINDS)
def test_reference_pairwise_gradient_over_row_blocks_sums_aligned_pairs(name):
    # more rows than one parallel block of the pairwise kernel, so the boxes2 gradient sums partials
    rng = np.random.default_rng(10)
    n, m = 2 * ROW_BLOCK + 7, 3
    a, b = random_boxes(rng, n).astype(np.float64), random_boxes(rng, m).astype(np.float64)
    fn = getattr(ref, name)
    value, g = fn(a, b, pairwise=True, reduction="sum", grad=True)
    want, g_pairs = fn(np.repeat(a, m, axis=0), np.tile(b, (n, 1)), reduction="sum", grad=True)
    assert fn(a, b, pairwise=True, reduction="sum") == value  # the value-only path
    assert value == pytest.approx(want, rel=1e-12)
    np.testing.assert_allclose(g["boxes1"], g_pairs["boxes1"].reshape(n, m, 4).sum(1), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(g["boxes2"], g_pairs["boxes2"].reshape(n, m, 4).sum(0), rtol=1e-10, atol=1e-10)


# --- atan2 without an Atan node -------------------------------------------------------------------


def test_atan2_equals_numpy_everywhere():
    rng = np.random.default_rng(8)
    y = rng.standard_normal(20000) * np.exp(3 * rng.standard_normal(20000))
    x = rng.standard_normal(20000) * np.exp(3 * rng.standard_normal(20000))
    axes = np.array([0.0, 1.0, -1.0, 2.5, 0.0, 0.0, 3.0, -3.0])
    y, x = np.concatenate([y, axes, axes[::-1]]), np.concatenate([x, axes[::-1], axes])
    np.testing.assert_allclose(atan2(_t(y), _t(x)).numpy(), np.arctan2(y, x), rtol=0, atol=2e-15)
    got32 = atan2(torch.tensor(y, dtype=torch.float32), torch.tensor(x, dtype=torch.float32)).double().numpy()
    np.testing.assert_allclose(got32, np.arctan2(y.astype(np.float32), x.astype(np.float32)), rtol=0, atol=5e-7)


def test_atan2_gradient_on_axes_and_diagonal():
    # d atan2(y, x) = (x dy - y dx) / (x² + y²): exact on the axes and the diagonal, 0 at the origin
    y = _t([0.0, 2.0, 1.5, 0.0, -1.0]).requires_grad_(True)
    x = _t([3.0, 0.0, 1.5, 0.0, -1.0]).requires_grad_(True)
    gy, gx = torch.autograd.grad(atan2(y, x).sum(), [y, x])
    r2 = np.where((x**2 + y**2).detach().numpy() > 0, (x**2 + y**2).detach().numpy(), 1.0)
    np.testing.assert_allclose(gy.numpy(), x.detach().numpy() / r2, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(gx.numpy(), -y.detach().numpy() / r2, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("name", ["ciou"])
def test_ciou_graph_has_no_atan_node(name, graphs):
    spec = catalog.get(name)
    case = spec.cases[0]
    for with_grad in (False, True):
        model = onnx.load(graphs.get(spec, spec.resolve(case.params), case.export_dims, with_grad))
        ops = {n.op_type for n in model.graph.node} | {n.op_type for f in model.functions for n in f.node}
        assert not ops & {"Atan", "Acos", "Asin"}, ops


# --- FCOS ltrb forms -------------------------------------------------------------------------------


def test_ltrb_losses_equal_xyxy_boxes_around_the_point():
    rng = np.random.default_rng(9)
    p, q = rng.uniform(0.2, 9, (50, 4)), rng.uniform(0.2, 9, (50, 4))
    to_xyxy = lambda d: np.stack([-d[:, 0], -d[:, 1], d[:, 2], d[:, 3]], axis=1)  # noqa: E731
    iou = ref.box_iou(to_xyxy(p), to_xyxy(q), output="value", eps=0.0)
    giou = ref.giou(to_xyxy(p), to_xyxy(q), output="value", eps=0.0)
    np.testing.assert_allclose(ltrb_iou_loss(_t(p), _t(q), "iou").numpy(), -np.log(iou), rtol=1e-12)
    np.testing.assert_allclose(ltrb_iou_loss(_t(p), _t(q), "giou").numpy(), 1 - giou, rtol=1e-12, atol=1e-14)


# --- bad input -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", KINDS)
def test_bad_options_and_shapes(name):
    a, b = _t([[0.0, 0, 1, 1]]), _t([[0.0, 0, 1, 1], [1.0, 1, 2, 2]])
    fn = getattr(F, name)
    with pytest.raises(ValueError, match=f"{name}: boxes2 must have shape \\(N, 4\\) matching boxes1"):
        fn(a, b)
    assert fn(a, b, pairwise=True).shape == (1, 2)
    with pytest.raises(ValueError, match="output must be one of"):
        fn(a, a, output="iou")
    with pytest.raises(ValueError, match="boxes1 must have shape \\(N, 4\\)"):
        fn(_t([[0.0, 0, 1, 1, 5]]), a)
    with pytest.raises(ValueError, match="output must be one of"):
        getattr(ref, name)(a.numpy(), a.numpy(), output="iou")

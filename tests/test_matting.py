"""Matting losses: the source formulas (loop code), definitions, the pyramid, routing, sizes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lossgraph as lg
from lossgraph import catalog
from lossgraph import reference as ref
from lossgraph.export import OnnxLoss, OnnxLossError
from lossgraph.baselines import matting as src

F = lg.functional
AREA_512 = 512 * 512
MASKED = ["unknown_l1", "known_l1", "known_smooth_l1", "smooth_l1", "bce", "sigmoid_focal", "gradient_penalty"]
CATALOG_NAME = {"bce": "matting_bce", "sigmoid_focal": "matting_focal"}


def _mattes(shape, seed=0, hard=False):
    """float64 torch (pred, target, mask); each image's mask and its complement are non-empty."""
    rng = np.random.default_rng(seed)
    pred = 1 / (1 + np.exp(-2 * rng.standard_normal(shape)))
    u = rng.random(shape)
    target = (u > 0.5) * 1.0 if hard else np.where(u < 0.35, 0.0, np.where(u > 0.65, 1.0, (u - 0.35) / 0.3))
    mask = (rng.random(shape) < 0.5) * 1.0
    mask[:, :, 0, 0], mask[:, :, -1, -1] = 1.0, 0.0
    return tuple(torch.tensor(a) for a in (pred, target, mask))


def _term(key, **params):
    return catalog.get(CATALOG_NAME.get(key, key)).build(**params)


@pytest.mark.parametrize("key", MASKED)
@pytest.mark.parametrize("shape", [(2, 1, 9, 13), (3, 1, 1, 1), (1, 1, 32, 5)])
def test_area_512_equals_source_formula(key, shape):
    pred, target, mask = _mattes(shape, seed=len(key))
    if shape[-1] == 1:
        mask[1:] = 1 - mask[1:]  # mixed per-image masks, none empty over the batch
    want = src.LOSSES[key](pred, target, mask).item()
    got = _term(key, area=AREA_512)(pred, target, mask).item()
    assert got == pytest.approx(want, rel=1e-12)
    args = [a.numpy() for a in (pred, target, mask)]
    assert catalog.get(CATALOG_NAME.get(key, key)).reference(*args, area=AREA_512) == pytest.approx(want, rel=1e-12)


def test_default_area_is_masked_mean_and_source_at_512():
    pred, target, mask = _mattes((2, 1, 512, 512), seed=3)
    d, m = (pred - target).abs(), mask
    assert F.unknown_l1(pred, target, mask).item() == pytest.approx(((d * m).sum() / m.sum()).item(), rel=1e-12)
    assert F.known_l1(pred, target, mask).item() == pytest.approx(((d * (1 - m)).sum() / (1 - m).sum()).item(), rel=1e-12)
    for key in MASKED:  # at 512×512 the default area is the source's normaliser
        assert _term(key)(pred, target, mask).item() == pytest.approx(src.LOSSES[key](pred, target, mask).item(), rel=1e-10)


def test_empty_mask_gives_zero_and_no_nan():
    pred, target, mask = _mattes((2, 1, 5, 6), seed=4)
    pred.requires_grad_(True)
    for key in MASKED:
        for m in (torch.zeros_like(mask), torch.ones_like(mask)):
            value = _term(key)(pred, target, m)
            (g,) = torch.autograd.grad(value, pred)
            region_empty = (key.startswith("known") and m.sum() > 0) or (not key.startswith("known") and m.sum() == 0)
            if region_empty:
                assert value.item() == 0.0 and torch.all(g == 0)
            assert torch.isfinite(value) and torch.isfinite(g).all()


def test_hand_computed_values():
    pred = torch.tensor([[[[0.2, 0.9], [0.5, 0.0]]]], dtype=torch.float64)
    target = torch.tensor([[[[0.0, 1.0], [1.0, 0.0]]]], dtype=torch.float64)
    mask = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]], dtype=torch.float64)
    assert F.unknown_l1(pred, target, mask).item() == pytest.approx((0.2 + 0.1) / 2)
    assert F.known_l1(pred, target, mask).item() == pytest.approx((0.5 + 0.0) / 2)
    assert F.known_smooth_l1(pred, target, mask).item() == pytest.approx(0.5 * 0.25 / 2)
    assert F.unknown_l1(pred, target, mask, area=8).item() == pytest.approx((0.2 + 0.1) / 2 * 8 / 4)
    assert F.matting_bce(pred, target, mask).item() == pytest.approx((-np.log(0.8) - np.log(0.9)) / 2)
    # columns [0, 1] with zero padding: the window at (0, 0) is [[0,0,0],[0,0,1],[0,0,1]] -> gx = 2 + 1 = 3,
    # gy = bottom row [0,0,1]·[1,2,1] = 1; at (0, 1) the middle column (weight 0 in Sobel-x) holds the 1s
    img = torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]], dtype=torch.float64)
    gx, gy = lg.matting.sobel(img)
    np.testing.assert_allclose(gx[0, 0].numpy(), [[3.0, 0.0], [3.0, 0.0]])
    np.testing.assert_allclose(gy[0, 0].numpy(), [[1.0, 2.0], [-1.0, -2.0]])


def test_sobel_equals_conv2d(rng):
    x = torch.tensor(rng.random((2, 1, 7, 9)))
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=torch.float64).view(1, 1, 3, 3)
    gx, gy = lg.matting.sobel(x)
    torch.testing.assert_close(gx, torch.nn.functional.conv2d(x, kx, padding=1), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gy, torch.nn.functional.conv2d(x, kx.transpose(2, 3), padding=1), rtol=1e-12, atol=1e-12)


# --- Laplacian ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(2, 1, 64, 96), (1, 1, 97, 130), (2, 1, 65, 64)])
def test_laplacian_equals_source_conv_code(shape):
    pred, target, _ = _mattes(shape, seed=5)
    want = src.laplacian_loss(pred, target).item()
    assert F.laplacian(pred, target).item() == pytest.approx(want, rel=1e-12)
    assert ref.laplacian(pred.numpy(), target.numpy()) == pytest.approx(want, rel=1e-12)


def test_pyramid_reconstructs_the_image_and_matches_torch():
    rng = np.random.default_rng(6)
    img = rng.random((2, 1, 64, 96))
    pyr = ref.matting.laplacian_pyramid(img, 5)
    assert [p.shape[-2:] for p in pyr] == [(64, 96), (32, 48), (16, 24), (8, 12), (4, 6), (2, 3)]
    np.testing.assert_allclose(ref.matting.reconstruct(pyr), img, rtol=0, atol=1e-12)
    for a, b in zip(lg.matting.laplacian_pyramid(torch.tensor(img), 5), pyr):
        np.testing.assert_allclose(a.numpy(), b, rtol=0, atol=1e-12)
    kernel = src.gauss_kernel()
    for a, b in zip(src.lap_pyramid(torch.tensor(img), kernel, 5), pyr):
        np.testing.assert_allclose(a.numpy(), b, rtol=0, atol=1e-12)


def test_laplacian_ignores_constant_offsets():
    """Blur and zero-insertion upsampling preserve constants (reflect keeps the parity), so every
    band-pass level of a constant image is 0."""
    pred, target, _ = _mattes((2, 1, 70, 66), seed=7)
    assert F.laplacian(pred, pred + 0.25).item() == pytest.approx(0.0, abs=1e-14)
    assert ref.laplacian(pred.numpy(), pred.numpy() + 0.25) == pytest.approx(0.0, abs=1e-14)


@pytest.mark.parametrize("levels,ok,bad", [(5, 64, 63), (3, 16, 15), (1, 4, 3)])
def test_laplacian_minimum_size(levels, ok, bad):
    x = torch.rand(1, 1, ok, ok + 3)
    F.laplacian(x, x * 0.5, levels=levels)
    ref.laplacian(x.numpy(), x.numpy(), levels=levels)
    small = torch.rand(1, 1, bad, 100)
    with pytest.raises(ValueError, match=f"laplacian: pred is too small.*at least {ok}"):
        F.laplacian(small, small, levels=levels)
    with pytest.raises(ValueError, match=f"at least {ok}"):
        ref.laplacian(small.numpy(), small.numpy(), levels=levels)
    assert catalog.get("laplacian").min_sizes({"levels": levels}) == {"H": ok, "W": ok}


@pytest.mark.parametrize("name", ["laplacian"])
def test_laplacian_graph_refuses_small_inputs(name, graphs):
    """The graph exported at 64×64 declares H, W >= 64 (metadata); the runner says so before running."""
    spec = catalog.get(name)
    case = spec.cases[0]
    run = OnnxLoss(graphs.get(spec, spec.resolve(case.params), case.export_dims, False), providers="cpu")
    assert run.metadata["lossgraph.min_dims"] == '{"H": 64, "W": 64}'
    x = np.random.default_rng(0).random((2, 1, 64, 40)).astype(np.float32)
    with pytest.raises(OnnxLossError, match="pred is too small: W = 40, the graph needs W >= 64"):
        run(x, x)


# --- loss sets ---------------------------------------------------------------------------------------


def test_matting_set_equals_its_terms_and_source():
    pred, target, mask = _mattes((2, 1, 64, 70), seed=8)
    keys = [*MASKED, "laplacian"]
    out = F.matting_set(pred, target, mask, losses=keys, area=AREA_512)
    assert list(out) == keys
    want = src.loss_function(pred, target, mask, keys)
    for k in keys:
        assert out[k].item() == pytest.approx(want[k].item(), rel=1e-12), k
    r = ref.matting_set(*(a.numpy() for a in (pred, target, mask)), losses=keys, area=AREA_512)
    assert r == pytest.approx({k: v.item() for k, v in want.items()}, rel=1e-12)


def _mixed_batch():
    """Samples: binary mask, soft alpha, all-0 mask, all-1 mask, soft alpha."""
    pred, target, mask = _mattes((5, 1, 8, 9), seed=9)
    hard = (target > 0.5).double()
    target = torch.stack([hard[0], target[1], torch.zeros_like(hard[2]), torch.ones_like(hard[3]), target[4]])
    mask[:, :, 0, 1] = 1.0
    return pred, target, mask


@pytest.mark.parametrize("route", ["binary", "constant"])
def test_seg_matting_routing_per_sample(route):
    pred, target, mask = _mixed_batch()
    seg, matting = ["bce", "sigmoid_focal", "unknown_l1"], ["unknown_l1", "known_l1", "gradient_penalty"]
    want_seg = {"binary": [True, False, True, True, False], "constant": [False, False, True, True, False]}[route]
    assert lg.matting.segmentation_samples(target, route).tolist() == want_seg
    assert ref.matting.segmentation_samples(target.numpy(), route).tolist() == want_seg
    out = F.seg_matting_set(pred, target, mask, seg=seg, matting=matting, route=route, area=AREA_512)
    want = src.loss_function2(pred, target, mask, seg, matting, route=route)
    assert list(out) == ["bce", "sigmoid_focal", "unknown_l1", "known_l1", "gradient_penalty"]
    for k in want:
        assert out[k].item() == pytest.approx(want[k].item(), rel=1e-12), k
    # routed by hand: each key is the sum over the samples that took it of the term on that sample alone
    for k in out:
        take = [(s and k in seg) or (not s and k in matting) for s in want_seg]
        by_hand = sum(src.LOSSES[k](pred[i : i + 1], target[i : i + 1], mask[i : i + 1]).item()
                      for i in range(5) if take[i])
        assert out[k].item() == pytest.approx(by_hand, rel=1e-12), k
    r = ref.seg_matting_set(*(a.numpy() for a in (pred, target, mask)), seg=seg, matting=matting, route=route,
                            area=AREA_512)
    assert r == pytest.approx({k: v.item() for k, v in want.items()}, rel=1e-12)


def test_seg_matting_keys_always_present():
    pred, target, mask = _mixed_batch()
    out = F.seg_matting_set(pred, torch.full_like(target, 0.5), mask, seg=["bce"], matting=["known_l1"])
    assert set(out) == {"bce", "known_l1"} and out["bce"].item() == 0.0 and out["known_l1"].item() > 0


def test_seg_matting_with_laplacian_equals_source_loop():
    pred, target, mask = _mattes((3, 1, 64, 66), seed=10)
    target[0] = (target[0] > 0.5).double()
    out = F.seg_matting_set(pred, target, mask, seg=["bce"], matting=["laplacian"], route="binary")
    want = src.loss_function2(pred, target, mask, ["bce"], ["laplacian"], route="binary")
    assert out["laplacian"].item() == pytest.approx(want["laplacian"].item(), rel=1e-12)
    r = ref.seg_matting_set(*(a.numpy() for a in (pred, target, mask)), seg=["bce"], matting=["laplacian"])
    assert r["laplacian"] == pytest.approx(want["laplacian"].item(), rel=1e-12)


def test_set_options_are_checked():
    with pytest.raises(ValueError, match="matting_set: loss must be one of"):
        lg.MattingSet(losses=["unknown_l1", "dice"])
    with pytest.raises(ValueError, match="seg_matting_set: route must be one of"):
        lg.SegMattingSet(route="soft")
    assert catalog.get("matting_set").min_sizes({"losses": ["laplacian"], "levels": 2}) == {"H": 8, "W": 8}
    assert catalog.get("seg_matting_set").min_sizes() == {}


@pytest.mark.parametrize("name", sorted(src.BASELINES))
@pytest.mark.parametrize("area", [None, AREA_512])
def test_baselines_mapping_equals_catalog_module(name, area):
    """The bench's ``ours/source`` column: each BASELINES entry, called like the functional form with
    the catalog's parameters, gives the module's value (``area=None`` puts H·W in the source's 512²)."""
    spec = catalog.get(name)
    p = spec.resolve({} if name == "laplacian" else {"area": area})
    pred, target, mask = _mattes((3, 1, 64, 70), seed=13)
    target[0] = (target[0] > 0.5).double()  # one segmentation sample for the routed set
    args = (pred, target) if name == "laplacian" else (pred, target, mask)
    got, want = spec.build(**p)(*args), lg.baselines.baseline_of("matting", name)(*args, **p)
    got, want = (got, want) if isinstance(got, dict) else ({name: got}, {name: want})
    assert list(got) == list(want)
    for k in got:
        assert got[k].item() == pytest.approx(want[k].item(), rel=1e-12), k

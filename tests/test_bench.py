"""The benchmark harness on tiny shapes: what it measures and reports, never how fast (no timing asserts)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest

from lossgraph import bench, catalog, cli
from lossgraph.export.runner import cuda_usable
from lossgraph.baselines import lovasz as lovasz_baselines
from lossgraph.baselines import baseline_of

TINY = {"B": 2, "C": 3, "H": 5, "W": 7}


@pytest.mark.parametrize("name", ["lovasz_softmax"])
@pytest.mark.parametrize("grad", [False, True])
def test_every_backend_timed_and_agreeing(name, grad, graphs):
    # default parameters: the first case's graphs, shared with the parity tests through ``graphs``
    mode = "train" if grad else "forward"
    r = bench.bench_spec(catalog.get(name), TINY, repeat=2, threads=1, mode=mode, graphs=graphs)
    assert set(r.timings) == {"torch", "onnx", "reference", "source"} and r.grad == grad and r.mode == mode
    for b, t in r.timings.items():
        assert not t.skipped, b
        assert len(t.times) == 2 and t.median_s == float(np.median(t.times)) and t.first_s > 0
        assert t.value is not None
    # the four backends computed the same loss (and, with grad, the same gradient sums)
    assert r.max_rel_diff() < 1e-5
    if not grad:  # the value timed is the loss on the seeded inputs at TINY
        expected = catalog.get(name).ref(catalog.get(name).example_inputs(TINY), r.params)
        np.testing.assert_allclose(r.timings["torch"].value, expected, rtol=1e-5)
    assert r.timings["reference"].jit_s is not None and r.export_s is not None
    assert r.ratio("onnx", "torch") == r.median("onnx") / r.median("torch")
    assert r.dims == TINY and r.dims_from == "given" and r.threads == 1 and r.params == catalog.get(name).params
    # the peer (kornia's lovasz_softmax_loss: logits, per image, all classes) is timed on the same
    # inputs; at the catalog defaults (probabilities, present classes, whole batch) the definitions differ
    assert set(r.peers) == {"kornia"} and len(r.peers["kornia"].times) == 2
    assert r.peer_ratio("kornia") == r.median("torch") / r.peers["kornia"].median_s
    assert "definitions differ" in r.peer_notes["kornia"]


@pytest.mark.parametrize(
    ("name", "params", "library"),
    [
        ("lovasz_softmax", {"per_image": True, "classes": "all", "from_logits": True}, "kornia"),
        ("cross_entropy", {}, "torch"),
        ("dice", {"per_class": True}, "monai"),
    ],
)
def test_peer_column_train_mode_agrees_where_the_definitions_match(name, params, library):
    """Train mode times forward + backward of ours and of the peer on the same inputs, and says that
    value and gradient agree (checked here against the peer called directly, not the bench's note)."""
    import torch

    spec = catalog.get(name)
    r = bench.bench_spec(spec, TINY, params=params, repeat=1, threads=1, backends=("torch", "peers"))
    assert r.grad and r.mode == "train" and library in r.peers
    assert r.peer_notes[library].endswith(")") and "value and gradient agree" in r.peer_notes[library]
    assert r.fastest_peer() in r.peers and r.peer_ratio(library) > 0
    # independent check of the claim: the peer's value and gradient against lossgraph's, directly
    (peer,) = [q for q in bench.peers.peers_of(name) if q.library == library]
    p = spec.resolve(params)
    xs = [torch.from_numpy(v) for v in spec.example_inputs(TINY, seed=0, params=p).values()]
    xs[0].requires_grad_(True)
    ours = spec.build(**p)(*xs)
    (g_ours,) = torch.autograd.grad(ours, xs[0])
    theirs = peer.build(p)(*xs)
    (g_theirs,) = torch.autograd.grad(theirs, xs[0])
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(g_ours, g_theirs, rtol=1e-4, atol=1e-7)
    table = bench.format_table([r])
    assert f"{library} (same)" in table and "(train)" in table


def test_forward_mode_and_entries_without_gradient():
    r = bench.bench_spec(catalog.get("cross_entropy"), TINY, repeat=1, mode="forward", backends=("torch", "peers"))
    assert not r.grad and r.mode == "forward" and "value agree" in r.peer_notes["torch"]
    r = bench.bench_spec(catalog.get("iou"), TINY, repeat=1, backends=("torch", "peers"))  # a metric: no backward
    assert not r.grad and r.mode == "train" and "torchmetrics" in r.peers
    with pytest.raises(bench.BenchError, match="mode must be one of train, forward"):
        bench.bench_spec(catalog.get("iou"), TINY, mode="backward")


def test_entry_without_bench_dims_falls_back_and_says_so():
    spec = dataclasses.replace(catalog.get("sigmoid_focal"), bench_dims=None)
    dims, origin = bench.bench_dims(spec)
    assert dims == dict(spec.cases[0].export_dims) and origin == "export dims (no bench_dims)"


def test_export_dims_cover_every_case():
    """Pairwise boxes use M, which only the second case names: the default export dims hold it too,
    and the first case's sizes win where cases overlap."""
    spec = catalog.get("giou")
    assert spec.export_dims == {**spec.cases[1].export_dims, **spec.cases[0].export_dims}
    assert set(spec.export_dims) == {"N", "M"}
    assert bench.bench_dims(catalog.get("lovasz_hinge")) == ({"B": 8, "H": 256, "W": 256}, "bench_dims")


def test_source_discovery_by_mapping():
    assert baseline_of("lovasz", "lovasz_softmax") is lovasz_baselines.lovasz_softmax
    assert baseline_of("lovasz", "lovasz_hinge") is lovasz_baselines.lovasz_hinge
    assert baseline_of("lovasz", "no_such_loss") is None
    assert baseline_of("no_such_family", "x") is None


def test_missing_source_is_reported_not_timed():
    r = bench.bench_spec(catalog.get("sigmoid_focal"), TINY, repeat=1, backends=("torch", "reference", "source"))
    assert r.timings["source"].skipped == "no source formulation" and r.timings["source"].median_s is None
    assert r.ratio("torch", "source") is None and "onnx" not in r.timings and r.peers == {}
    table = bench.format_table([r])
    assert "| sigmoid_focal (train) | defaults | B2×C3×H5×W7 (given) |" in table and "—" in table


def test_cuda_provider_fails_clearly_without_cuda():
    if cuda_usable():
        assert bench.resolve_provider("cuda") == "cuda"
    else:
        with pytest.raises(bench.BenchError, match="CUDA is not usable here"):
            bench.resolve_provider("cuda")
        assert bench.resolve_provider("auto") == "cpu"
    with pytest.raises(bench.BenchError, match="provider must be"):
        bench.resolve_provider("tpu")


def test_peak_memory_sees_an_allocation():
    with bench.PeakMemory() as mem:
        a = np.ones(32 * 2**20)  # 256 MiB, touched
        a.sum()
        del a
    if mem.mib is None:
        pytest.skip("no /proc/self/clear_refs on this platform")
    assert 200 < mem.mib < 400


def test_cli_bench_writes_table_json_and_png(tmp_path, capsys):
    out = tmp_path / "res"
    rc = cli.main(["bench", "lovasz_hinge", "--shape", "B=2,H=4,W=5", "--repeat", "1", "--threads", "1",
                   "--backends", "torch,reference,source,peers", "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "lovasz_hinge (train) B2×H4×W5 [cpu, 1 threads]" in text and "ours/source" in text
    assert "ours/kornia" in text and "| ours/peer (definition) |" in text
    md = (out / "results.md").read_text()
    assert "| loss | params | size | torch ms |" in md and "results.png" in md and "kornia.losses.lovasz_hinge_loss" in md
    data = json.loads((out / "results.json").read_text())
    assert data["results"][0]["name"] == "lovasz_hinge" and data["environment"]["threads"] == 1
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (back,) = bench.load_results(str(out / "results.json"))  # the saved run comes back as Results
    assert back.name == "lovasz_hinge" and back.timings["torch"].median_s == data["results"][0]["timings"]["torch"]["median_s"]
    assert back.peers["kornia"].median_s == data["results"][0]["peers"]["kornia"]["median_s"]
    assert bench.summary(back).startswith("lovasz_hinge (train) B2×H4×W5 [cpu, 1 threads]")
    assert cli.main(["bench", "lovasz_hinge", "--shape", "B=2,H=4,W=5", "--repeat", "1", "--mode", "forward",
                     "--backends", "torch,peers", "--out", ""]) == 0
    assert "lovasz_hinge B2×H4×W5 [cpu" in capsys.readouterr().out


def test_cli_bench_errors(capsys):
    assert cli.main(["bench"]) == 2
    assert "bench takes loss names or --all" in capsys.readouterr().err
    assert cli.main(["bench", "nope"]) == 2
    assert "unknown loss 'nope'" in capsys.readouterr().err
    if not cuda_usable():
        assert cli.main(["bench", "lovasz_hinge", "--provider", "cuda", "--out", ""]) == 2
        assert "CUDA is not usable here" in capsys.readouterr().err


MALLOC_PROBE = """
import ctypes, resource, sys
ctypes.CDLL("libc.so.6").prctl(41, 1, 0, 0, 0)  # PR_SET_THP_DISABLE: 4 KiB pages, so faults count pages
import numpy as np
from lossgraph import bench
mode = bench.set_malloc(sys.argv[1])
def faults():
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    np.ones(2**23).sum()  # 64 MiB, touched, freed
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
faults()
print(mode, faults())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt and ru_minflt")
def test_malloc_reuse_keeps_freed_memory_for_the_next_call():
    """By default a 64 MiB block is mapped afresh on every call (16,384 page faults of 4 KiB); with
    "reuse" the second call finds it in the heap (page faults, not seconds: nothing here depends on load)."""
    runs = {}
    for mode in ("default", "reuse"):
        out = subprocess.run([sys.executable, "-c", MALLOC_PROBE, mode], capture_output=True, text=True, check=True)
        got_mode, n = out.stdout.split()
        assert got_mode == mode
        runs[mode] = int(n)
    assert runs["default"] > 10_000 and runs["reuse"] < 1_000, runs


def test_malloc_mode_is_checked_and_recorded():
    with pytest.raises(bench.BenchError, match="malloc must be one of default, reuse"):
        bench.set_malloc("tcmalloc")
    r = bench.bench_spec(catalog.get("lovasz_hinge"), {"B": 1, "H": 3, "W": 4}, repeat=1, backends=("torch",))
    assert r.malloc == bench.set_malloc("default") == "default"
    assert bench.environment(1)["malloc"] == "default" and "malloc" not in bench.summary(r)

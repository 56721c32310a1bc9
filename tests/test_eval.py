"""Batch evaluation of saved predictions: rows per file, bad files reported, sharding, resume, CLI."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import lossgraph as lg
from lossgraph import reference as ref
from lossgraph.cli import main
from lossgraph.export import OnnxLoss, evaluate_files, read_results, summarize
from lossgraph.export.samples import in_shard, npz_files, parse_shard

pytestmark = pytest.mark.xdist_group("sigmoid_focal")  # shares the parity tests' exported graph

SPEC = lg.catalog.get("sigmoid_focal")
PARAMS = SPEC.resolve(SPEC.cases[0].params)


@pytest.fixture(scope="module")
def focal(graphs):
    return graphs.get(SPEC, PARAMS, SPEC.cases[0].export_dims, False)


def _expected(path):
    with np.load(path) as d:
        return ref.sigmoid_focal(d["logits"].astype(np.float64), d["targets"], **PARAMS)


def _dataset(root, n, bad=True, seed=0):
    """n good files (a third in a subfolder, odd shapes, 1 pixel); with ``bad``, four bad files
    sorted into the middle of the list. Returns {bad file name: words of its error}."""
    rng = np.random.default_rng(seed)
    os.makedirs(root / "sub", exist_ok=True)
    for i in range(n):
        dims = {"B": 1 + i % 3, "C": 1 + i % 4, "H": 1 + i % 7, "W": 1 + i % 5}
        x = SPEC.make_inputs(dims, rng, PARAMS)
        np.savez(root / ("sub" if i % 3 == 0 else "") / f"f{i:04d}.npz", **x)
    if not bad:
        return {}
    mid = f"f{n // 2:04d}"
    x = SPEC.make_inputs({"B": 1, "C": 2, "H": 3, "W": 4}, rng, PARAMS)
    np.savez(root / f"{mid}_cut.npz", **x)
    data = (root / f"{mid}_cut.npz").read_bytes()
    (root / f"{mid}_cut.npz").write_bytes(data[: len(data) // 2])  # a copy cut short
    np.savez(root / f"{mid}_rank.npz", logits=np.zeros((2, 3, 4), np.float32), targets=np.zeros((2, 3, 4), np.float32))
    np.savez(root / f"{mid}_missing.npz", logits=x["logits"])
    x["logits"][0, 1, 2, 3] = np.nan
    np.savez(root / f"{mid}_nan.npz", **x)
    return {
        f"{mid}_cut.npz": "not a readable .npz file",
        f"{mid}_rank.npz": "sigmoid_focal: logits must have shape (B, C, H, W); got (2, 3, 4)",
        f"{mid}_missing.npz": "missing input(s) targets; the file has arrays logits",
        f"{mid}_nan.npz": "input logits has 1 non-finite value (NaN or inf)",
    }


def test_directory_rows_values_and_bad_files(focal, tmp_path):
    bad = _dataset(tmp_path / "data", 40)
    out = tmp_path / "r.jsonl"
    rows = evaluate_files(focal, tmp_path / "data", out=out, providers="cpu", check_finite=True)
    assert len(rows) == 44
    assert [r["file"] for r in rows] == sorted((r["file"] for r in rows), key=lambda f: os.path.relpath(f, tmp_path / "data"))
    assert read_results(out) == json.loads(json.dumps(rows))  # the file holds exactly the rows, in order
    for r in rows:
        name = os.path.basename(r["file"])
        if name in bad:
            assert r["outputs"] is None and bad[name] in r["error"], r
        else:
            assert r["error"] is None and r["seconds"] > 0
            np.testing.assert_allclose(r["outputs"]["loss"], _expected(r["file"]), rtol=SPEC.rtol, atol=SPEC.atol)
    s = summarize(rows)
    assert (s["count"], s["ok"], s["failed"]) == (44, 40, 4)
    good = [_expected(r["file"]) for r in rows if not r["error"]]
    np.testing.assert_allclose(s["mean"]["loss"], np.mean(good), rtol=1e-5)
    pixels = []  # the pixel-weighted mean: each file by its B·H·W, read from the file itself
    for r in rows:
        if not r["error"]:
            with np.load(r["file"]) as d:
                b, _, h, w = d["logits"].shape
            pixels.append(b * h * w)
    assert [r["pixels"] for r in rows if not r["error"]] == pixels
    np.testing.assert_allclose(s["pixel_mean"]["loss"], np.average(good, weights=pixels), rtol=1e-5)
    assert {os.path.basename(f["file"]) for f in s["failures"]} == set(bad)


def test_nan_passes_without_check_finite_and_csv_round_trip(focal, tmp_path):
    _dataset(tmp_path / "data", 12)
    out = tmp_path / "r.csv"
    rows = evaluate_files(focal, str(tmp_path / "data" / "**" / "*.npz"), out=out, providers="cpu")
    assert sum(r["error"] is not None for r in rows) == 3  # the NaN file runs and gives NaN
    nan_row = next(r for r in rows if r["file"].endswith("_nan.npz"))
    assert nan_row["outputs"]["loss"] is None and nan_row["nonfinite"] == ["loss"]  # strict JSON: null, marked
    back = read_results(out)
    assert [r["file"] for r in back] == [r["file"] for r in rows]
    for a, b in zip(back, rows):
        assert a["error"] == b["error"]
        if b["outputs"]:
            np.testing.assert_equal(a["outputs"]["loss"], b["outputs"]["loss"])


def test_mapping_outputs_and_array_outputs(graphs, tmp_path):
    params = SPEC.resolve(SPEC.cases[1].params)  # reduction='none': an array output
    path = graphs.get(SPEC, params, SPEC.cases[1].export_dims, True)
    x = SPEC.example_inputs({"B": 1, "C": 2, "H": 3, "W": 2}, seed=2, params=params)
    np.savez(tmp_path / "a.npz", pred=x["logits"], gt=x["targets"], extra=np.arange(3))
    (row,) = evaluate_files(path, tmp_path / "a.npz", mapping={"logits": "pred", "targets": "gt"}, outputs=["grad_logits"])
    assert list(row["outputs"]) == ["grad_logits"]
    _, grad = SPEC.ref({k: v.astype(np.float64) if v.dtype.kind == "f" else v for k, v in x.items()}, params, grad=True)
    np.testing.assert_allclose(row["outputs"]["grad_logits"], grad["logits"], rtol=1e-4, atol=1e-4 * np.abs(grad["logits"]).max())
    (row,) = evaluate_files(path, tmp_path / "a.npz", mapping={"logits": "pred"})
    assert row["error"] == "missing input(s) targets; the file has arrays pred, gt, extra"
    with pytest.raises(ValueError, match="mapping names nope, not inputs of the graph"):
        evaluate_files(path, tmp_path / "a.npz", mapping={"nope": "pred"})
    with pytest.raises(ValueError, match="unknown output"):
        evaluate_files(path, tmp_path / "a.npz", outputs=["los"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no .npz files in"):
        evaluate_files(path, tmp_path / "empty")
    with pytest.raises(ValueError, match="must end in"):
        evaluate_files(path, tmp_path / "a.npz", out=tmp_path / "r.txt")


def test_shards_partition_the_files_whatever_the_mount_point(tmp_path):
    _dataset(tmp_path / "a", 60, bad=False)
    shutil.copytree(tmp_path / "a", tmp_path / "elsewhere" / "b")
    keys = [k for _, k in npz_files(tmp_path / "a")]
    assert keys == [k for _, k in npz_files(tmp_path / "elsewhere" / "b")] and len(keys) == 60
    parts = [[k for k in keys if in_shard(k, (i, 4))] for i in range(1, 5)]
    assert sorted(sum(parts, [])) == sorted(keys)  # each file in exactly one shard
    assert all(5 <= len(p) <= 25 for p in parts), [len(p) for p in parts]
    assert parse_shard("3/4") == (3, 4)
    for bad in ("0/4", "5/4", "1", "a/b", "1/0"):
        with pytest.raises(ValueError, match="shard takes I/N"):
            parse_shard(bad)


def test_sharded_runs_cover_the_dataset(focal, tmp_path):
    _dataset(tmp_path / "data", 30, bad=False)
    whole = evaluate_files(focal, tmp_path / "data", providers="cpu")
    parts = [evaluate_files(focal, tmp_path / "data", providers="cpu", shard=f"{i}/3") for i in (1, 2, 3)]
    assert sorted((r["file"], r["outputs"]["loss"]) for p in parts for r in p) == sorted(
        (r["file"], r["outputs"]["loss"]) for r in whole
    )


def test_resume_skips_done_files_and_drops_a_cut_row(focal, tmp_path):
    _dataset(tmp_path / "data", 20)
    out = tmp_path / "r.jsonl"
    full = evaluate_files(focal, tmp_path / "data", out=out, providers="cpu", check_finite=True)
    lines = out.read_text().splitlines(keepends=True)
    assert json.loads(lines[0])["lossgraph"]["outputs"] == ["loss"]  # the header, then one line per row
    out.write_text("".join(lines[:8]) + lines[8][:25])  # a run killed while writing row 8

    seen = []

    class Spy(lg.export.evaluate.Progress):
        def start(self, total, skipped):
            seen.append((total, skipped))

    rows = evaluate_files(focal, tmp_path / "data", out=out, providers="cpu", resume=True, check_finite=True, progress=Spy())
    assert seen == [(24, 7)]
    assert [r["file"] for r in read_results(out)] == [r["file"] for r in full]  # no duplicates, none lost
    assert json.loads(json.dumps(rows)) == read_results(out)
    for a, b in zip(rows, full):
        assert a["outputs"] == b["outputs"] and a["error"] == b["error"]
    again = evaluate_files(focal, tmp_path / "data", out=out, providers="cpu", resume=True, progress=Spy())
    assert seen[-1] == (24, 24) and len(again) == 24 and len(read_results(out)) == 24


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_resume_after_kill_9_or_ctrl_c(focal, tmp_path, sig):
    """A CLI run killed with SIGKILL (or interrupted by Ctrl-C) mid-way, then ``--resume``: every file
    once, same values as a clean run."""
    _dataset(tmp_path / "data", 400, bad=False)
    out = tmp_path / "r.jsonl"
    cmd = [sys.executable, "-m", "lossgraph.cli", "eval", str(focal), str(tmp_path / "data"), "--out", str(out), "--provider", "cpu"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if out.exists() and out.read_bytes().count(b"\n") >= 50:
            os.kill(proc.pid, sig)
            break
        time.sleep(0.002)
    proc.wait(60)
    assert proc.returncode in (0, -signal.SIGKILL if sig == signal.SIGKILL else 130)
    written = out.read_bytes()
    if proc.returncode == 0:  # finished before the kill (very fast machine): cut it by hand instead
        out.write_bytes(written[: written.index(b"\n", len(written) // 3) + 20])
    n_before = len(read_results(out))
    assert 0 < n_before < 400
    res = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert f"({n_before} already in the results, skipped)" in res.stderr
    rows = read_results(out)
    files = [r["file"] for r in rows]
    assert len(files) == len(set(files)) == 400
    clean = {r["file"]: r["outputs"] for r in evaluate_files(focal, tmp_path / "data", providers="cpu")}
    assert {r["file"]: r["outputs"] for r in rows} == clean


# --- the command line -------------------------------------------------------------------------------


def test_cli_batch_plain_progress_summary_and_exit_code(focal, tmp_path, capsys):
    bad = _dataset(tmp_path / "data", 24)
    out = tmp_path / "r.jsonl"
    code = main(["eval", str(focal), str(tmp_path / "data"), "--out", str(out), "--check-finite", "--provider", "cpu"])
    cap = capsys.readouterr()
    assert code == 1
    assert "eval: 28 files to evaluate" in cap.err and "eval: 28/28 files, 4 failed" in cap.err
    assert sum(line.startswith("eval: FAILED") for line in cap.err.splitlines()) == 4
    assert "28 files: 24 ok, 4 failed; mean loss" in cap.out
    assert len(read_results(out)) == 28
    for name, words in bad.items():
        assert f"{name}: {words}" in cap.out
    # a clean set exits 0; --json gives the summary as JSON
    code = main(["eval", str(focal), str(tmp_path / "data" / "sub"), "--out", str(tmp_path / "s.csv"), "--json"])
    cap = capsys.readouterr()
    summary = json.loads(cap.out)
    assert code == 0 and summary["count"] == 8 and summary["failed"] == 0
    # without --out the rows are JSON lines on stdout
    code = main(["eval", str(focal), str(tmp_path / "data" / "sub"), "--shard", "1/1"])
    cap = capsys.readouterr()
    assert code == 0 and [json.loads(line)["error"] for line in cap.out.splitlines()] == [None] * 8


def test_cli_bar_on_a_terminal(focal, tmp_path, capsys, monkeypatch):
    _dataset(tmp_path / "data", 6, bad=False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(["eval", str(focal), str(tmp_path / "data"), "--out", str(tmp_path / "r.jsonl")]) == 0
    err = capsys.readouterr().err
    assert "eval: 100%" in err and "6/6" in err and "file/s" in err


@pytest.mark.parametrize(
    "argv,words",
    [
        (["--resume"], "--resume needs --out"),
        (["--out", "r.txt"], "results file must end in"),
        (["--shard", "3/2", "--out", "r.jsonl"], "shard takes I/N"),
        (["--map", "logits"], "--map takes INPUT=ARRAY"),
    ],
)
def test_cli_setup_mistakes(focal, tmp_path, capsys, argv, words):
    _dataset(tmp_path / "data", 2, bad=False)
    code = main(["eval", str(focal), str(tmp_path / "data"), *argv])
    err = capsys.readouterr().err
    assert code == 2 and words in err and len(err.strip().splitlines()) == 1


def test_evaluate_files_is_torch_free(focal, tmp_path):
    _dataset(tmp_path / "data", 3, bad=False)
    code = textwrap.dedent(
        f"""
        import sys
        from lossgraph.export import evaluate_files
        rows = evaluate_files({str(focal)!r}, {str(tmp_path / "data")!r}, out={str(tmp_path / "r.csv")!r})
        assert [r["error"] for r in rows] == [None] * 3
        assert "torch" not in sys.modules
        """
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr


def test_one_session_for_the_whole_run(focal, tmp_path, monkeypatch):
    import onnxruntime

    _dataset(tmp_path / "data", 5, bad=False)
    created = []
    real = onnxruntime.InferenceSession
    monkeypatch.setattr(onnxruntime, "InferenceSession", lambda *a, **k: created.append(a) or real(*a, **k))
    rows = evaluate_files(focal, tmp_path / "data", providers="cpu")
    assert [r["error"] for r in rows] == [None] * 5 and len(created) == 1

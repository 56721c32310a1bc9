"""Evaluating a segmentation dataset: predictions and ground truth in their own files (.npy, PNG,
palette PNG, 16-bit PNG, TIFF, .npz:array), dataset-level metrics checked against NumPy and
torchmetrics, shard merging, the report, one writer, resume keys, symlink loops, NaN, output errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from torchmetrics.classification import MulticlassJaccardIndex

import lossgraph as lg
from lossgraph.cli import main
from lossgraph.export import OnnxLoss, evaluate_files, read_results, read_results_file, run_header, summarize
from lossgraph.export.results import ResultsWriter
from lossgraph.export.samples import npz_files, template_samples

pytestmark = pytest.mark.xdist_group("confusion")  # shares the parity tests' exported graph

SPEC = lg.catalog.get("confusion")
C, IGNORE = 5, 255
PARAMS = SPEC.resolve({"ignore_index": IGNORE})
#: the PASCAL VOC colour map's first entries (a palette PNG stores indices; colours must not matter)
VOC = [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0, 0, 0, 128]


@pytest.fixture(scope="module")
def graph(graphs):
    case = next(c for c in SPEC.cases if c.params == {"ignore_index": IGNORE})
    return graphs.get(SPEC, PARAMS, case.export_dims, False)


def _save_mask(path, lab, kind):
    if kind == "L":
        Image.fromarray(lab.astype(np.uint8), mode="L").save(path)
    elif kind == "P":
        img = Image.fromarray(lab.astype(np.uint8), mode="P")
        img.putpalette(VOC + [255, 255, 255] * (256 - len(VOC) // 3))
        img.save(path)
    else:  # 16-bit grayscale
        Image.fromarray(lab.astype(np.uint16)).save(path)
    with Image.open(path) as img:
        assert img.mode == {"L": "L", "P": "P", "I16": "I;16"}[kind]


def _voc_like(root, seed=0, n=9):
    """n samples: float16 (C, H, W) scores in preds/, masks in gt/ as 8-bit, palette and 16-bit PNGs,
    ~10% ignored pixels; class 4 never in ground truth nor predicted (absent); plus a prediction with
    no mask. Returns {stem: (scores, labels)} of the complete samples."""
    rng = np.random.default_rng(seed)
    (root / "preds").mkdir(parents=True)
    (root / "gt").mkdir()
    data = {}
    for i in range(n):
        h, w = [(6, 7), (5, 9), (1, 1), (8, 3), (7, 7), (4, 11)][i % 6]
        lab = rng.integers(0, C - 1, (h, w))
        scores = rng.normal(size=(C, h, w))
        right = rng.random((h, w)) < 0.7
        np.put_along_axis(scores, lab[None], np.take_along_axis(scores, lab[None], 0) + 3.0 * right[None], 0)
        scores[C - 1] = -30.0
        lab[rng.random((h, w)) < 0.1] = IGNORE
        stem = f"img{i:02d}"
        np.save(root / "preds" / f"{stem}.npy", scores.astype(np.float16))
        _save_mask(root / "gt" / f"{stem}.png", lab, ["L", "P", "I16"][i % 3])
        data[stem] = (scores.astype(np.float16), lab)
    np.save(root / "preds" / "lonely.npy", rng.normal(size=(C, 3, 3)).astype(np.float16))
    return data


def _numpy_confusion(data):
    """Independent: bincount of label * C + argmax over the counted pixels."""
    m = np.zeros((C, C), np.int64)
    for scores, lab in data.values():
        pred = scores.astype(np.float32).argmax(0)
        ok = lab != IGNORE
        m += np.bincount(lab[ok] * C + pred[ok], minlength=C * C).reshape(C, C)
    return m


def _templates(root):
    return [f"--input=logits={root}/preds/{{stem}}.npy", f"--input=labels={root}/gt/{{stem}}.png"]


def test_dataset_metrics_against_numpy_and_torchmetrics(graph, tmp_path, capsys):
    data = _voc_like(tmp_path / "d")
    out = tmp_path / "r.jsonl"
    code = main(["eval", str(graph), *_templates(tmp_path / "d"), "--out", str(out), "--json", "--provider", "cpu",
                 "--report", str(tmp_path / "rep"), "--worst", "3"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 1  # the prediction without a mask is a failed row
    assert (summary["count"], summary["ok"], summary["failed"]) == (10, 9, 1)
    assert summary["failures"] == [{"file": str(tmp_path / "d" / "preds" / "lonely.npy"),
                                    "error": f"missing labels file {tmp_path / 'd' / 'gt' / 'lonely.png'}"}]

    m = _numpy_confusion(data)
    np.testing.assert_array_equal(summary["sum"]["confusion"], m)  # exact counts
    ds = summary["dataset"]
    tp, gt, pred = np.diag(m), m.sum(1), m.sum(0)
    present = gt + pred > 0
    assert ds["absent"] == [4] and present.tolist() == [True, True, True, True, False]
    iou = tp[:4] / (gt + pred - tp)[:4]
    dice = 2 * tp[:4] / (gt + pred)[:4]
    np.testing.assert_allclose(ds["iou"][:4], iou, rtol=1e-12)
    np.testing.assert_allclose(ds["dice"][:4], dice, rtol=1e-12)
    np.testing.assert_allclose(ds["acc"][:4], tp[:4] / gt[:4], rtol=1e-12)
    assert ds["iou"][4] is None and ds["dice"][4] is None  # absent, not 0 or 1
    np.testing.assert_allclose([ds["miou"], ds["mdice"]], [iou.mean(), dice.mean()], rtol=1e-12)
    np.testing.assert_allclose(ds["pixel_accuracy"], tp.sum() / m.sum(), rtol=1e-12)
    assert ds["pixels"] == m.sum() == sum(int((lab != IGNORE).sum()) for _, lab in data.values())

    # the loop a user would write with torchmetrics, over the same arrays
    per_class = MulticlassJaccardIndex(num_classes=C, ignore_index=IGNORE, average=None)
    macro = MulticlassJaccardIndex(num_classes=C, ignore_index=IGNORE, average="macro")
    for scores, lab in data.values():
        p, t = torch.from_numpy(scores.astype(np.float32)).argmax(0)[None], torch.from_numpy(lab)[None]
        per_class.update(p, t)
        macro.update(p, t)
    tm = per_class.compute().double().numpy()
    np.testing.assert_allclose(ds["iou"][:4], tm[:4], rtol=1e-6)  # torchmetrics counts in float32
    np.testing.assert_allclose(ds["miou"], float(macro.compute()), rtol=1e-6)
    header, rows = read_results_file(out)
    tm_summary = summarize(rows, header, convention="torchmetrics")["dataset"]
    np.testing.assert_allclose(tm_summary["iou"], tm, rtol=1e-6)  # absent class: torchmetrics' 0
    assert np.isnan(summarize(rows, header, convention="mmseg")["dataset"]["iou"][4])

    # the report: per-class bars, histogram of per-file mIoU, worst files by their own mIoU
    report = (tmp_path / "rep" / "report.md").read_text()
    for png in ("iou.png", "hist_confusion.png"):
        assert (tmp_path / "rep" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"]({png})" in report
    file_miou = {}
    for stem, (scores, lab) in data.items():
        one = _numpy_confusion({stem: (scores, lab)})
        u = one.sum(0) + one.sum(1) - np.diag(one)
        if (u > 0).any():  # a file whose pixels are all ignored has no mIoU of its own
            file_miou[str(tmp_path / "d" / "preds" / f"{stem}.npy")] = float((np.diag(one)[u > 0] / u[u > 0]).mean())
    table = [line.split("|") for line in report.splitlines() if line.startswith("| `")]
    listed = {cells[1].strip(" `"): float(cells[2]) for cells in table}
    assert len(table) == 3 and len(file_miou) == 8
    for f, v in listed.items():
        np.testing.assert_allclose(v, file_miou[f], rtol=1e-5)  # each listed file with its own mIoU
    np.testing.assert_allclose(sorted(listed.values()), sorted(file_miou.values())[: len(table)], rtol=1e-5)
    assert "lonely.png" in report  # the failed sample is listed


def test_shards_merge_exactly(graph, tmp_path, capsys):
    _voc_like(tmp_path / "d", seed=1)
    t = _templates(tmp_path / "d")
    whole, a, b = tmp_path / "all.jsonl", tmp_path / "s1.jsonl", tmp_path / "s2.csv"
    for out, shard in ((whole, "1/1"), (a, "1/2"), (b, "2/2")):
        main(["eval", str(graph), *t, "--out", str(out), "--shard", shard, "--provider", "cpu"])
    capsys.readouterr()
    assert len(read_results(a)) + len(read_results(b)) == len(read_results(whole)) == 10
    code = main(["summarize", str(a), str(b), "--json"])
    merged = json.loads(capsys.readouterr().out)
    code_whole = main(["summarize", str(whole), "--json"])
    single = json.loads(capsys.readouterr().out)
    assert code == code_whole == 1
    assert merged["dataset"] == single["dataset"] and merged["sum"] == single["sum"]
    assert (merged["count"], merged["failed"]) == (single["count"], single["failed"]) == (10, 1)


def test_formats_npz_array_tif_rank_and_cast(graph, tmp_path):
    """uint8 score maps in an .npz under another array name, masks as TIFF, both one rank short;
    float32 score stacks as multi-page TIFF."""
    rng = np.random.default_rng(3)
    (tmp_path / "p").mkdir()
    (tmp_path / "g").mkdir()
    want = {}
    for stem in ("a", "b"):
        scores = rng.integers(0, 255, (C, 4, 6), dtype=np.uint8)
        lab = rng.integers(0, C, (4, 6)).astype(np.uint8)
        np.savez(tmp_path / "p" / f"x_{stem}.npz", scores=scores, other=np.zeros(3))
        Image.fromarray(lab, mode="L").save(tmp_path / "g" / f"{stem}.tif")
        want[stem] = _numpy_confusion({stem: (scores, lab)})
    rows = evaluate_files(graph, templates={"logits": f"{tmp_path}/p/x_{{stem}}.npz:scores",
                                            "labels": f"{tmp_path}/g/{{stem}}.tif"}, providers="cpu")
    assert [r["key"] for r in rows] == ["a", "b"] and [r["error"] for r in rows] == [None, None]
    for r in rows:
        np.testing.assert_array_equal(r["outputs"]["confusion"], want[r["key"]])
        assert r["pixels"] == 24
    # float32 (C, H, W) score stacks as multi-page TIFFs (tifffile), masks as 16-bit PNG
    import tifffile

    for stem in ("a", "b"):
        scores = rng.normal(size=(C, 3, 5)).astype(np.float32)
        lab = rng.integers(0, C, (3, 5))
        tifffile.imwrite(tmp_path / "p" / f"{stem}.tif", scores)
        _save_mask(tmp_path / "g" / f"{stem}.png", lab, "I16")
        want[stem] = _numpy_confusion({stem: (scores, lab)})
    rows = evaluate_files(graph, templates={"logits": f"{tmp_path}/p/{{stem}}.tif", "labels": f"{tmp_path}/g/{{stem}}.png"},
                          providers="cpu")
    for r in rows:
        assert r["error"] is None, r["error"]
        np.testing.assert_array_equal(r["outputs"]["confusion"], want[r["key"]])
    rows = evaluate_files(graph, templates={"logits": f"{tmp_path}/p/x_{{stem}}.npz:nope",
                                            "labels": f"{tmp_path}/g/{{stem}}.tif"}, providers="cpu")
    assert "missing input(s) logits (as nope); the file has arrays scores, other" in rows[0]["error"]


def test_graph_nan_guard(graph):
    """Fed straight to onnxruntime (no runner checks), an out-of-range label or a NaN/inf score gives
    NaN in every entry (the reference too), never a believable count."""
    run = OnnxLoss(graph, providers="cpu")
    x = SPEC.example_inputs({"B": 2, "C": C, "H": 3, "W": 4}, seed=1, params=PARAMS)
    assert json.loads(run.metadata["lossgraph.aggregation"]) == {"confusion": "confusion"}
    (good,) = run.session.run(None, x)
    assert np.isfinite(good).all() and good.sum() == (x["labels"] != IGNORE).sum()
    for bad in (7, -1):
        lab = x["labels"].copy()
        lab[1, 2, 3] = bad
        (out,) = run.session.run(None, {**x, "labels": lab})
        assert out.dtype == np.float64 and np.isnan(out).all()
    for bad in (np.nan, np.inf, -np.inf):
        logits = x["logits"].copy()
        logits[0, 1, 0, 0] = bad
        assert np.isnan(run.session.run(None, {**x, "logits": logits})[0]).all()
        assert np.isnan(lg.reference.confusion(logits, x["labels"], IGNORE)).all()
    big = x["logits"] * np.float32(1e36)  # finite, huge: counted, no overflow to NaN
    np.testing.assert_array_equal(run.session.run(None, {**x, "logits": big})[0], good)


# --- safe writing -----------------------------------------------------------------------------------


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "lossgraph.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def test_second_writer_refused_at_once(graph, tmp_path):
    _voc_like(tmp_path / "d", n=3)
    out = tmp_path / "r.jsonl"
    run = OnnxLoss(graph, providers="cpu")
    with ResultsWriter(out, ["confusion"], run_header(run, ["confusion"]), resume=False) as first:
        first.write({"key": "x", "file": "x", "outputs": None, "seconds": 0.0, "error": "held", "nonfinite": [], "pixels": None})
        before = out.read_bytes()
        for extra in ([], ["--resume"]):
            res = _cli("eval", graph, *_templates(tmp_path / "d"), "--out", out, "--provider", "cpu", *extra)
            assert res.returncode == 2 and res.stdout == ""
            assert res.stderr.strip().splitlines() == [
                f"lossgraph: error: {out} is being written by another lossgraph run (locked); "
                "wait for it to finish or write to another file"]
            assert out.read_bytes() == before  # nothing written, nothing truncated
    res = _cli("eval", graph, *_templates(tmp_path / "d"), "--out", out, "--provider", "cpu")
    assert res.returncode == 1 and len(read_results(out)) == 4  # the lock went with the first writer


def test_resume_keys_do_not_depend_on_the_spelling_of_the_root(graph, tmp_path, monkeypatch):
    _voc_like(tmp_path / "d", n=4)
    (tmp_path / "z" / "sub").mkdir(parents=True)
    for i in range(5):
        np.savez(tmp_path / "z" / ("sub" if i % 2 else "") / f"f{i}.npz",
                 **SPEC.example_inputs({"B": 1, "C": C, "H": 2 + i, "W": 3}, seed=i, params=PARAMS))
    monkeypatch.chdir(tmp_path)
    r = tmp_path / "r.jsonl"
    first = evaluate_files(graph, "z", out=r, providers="cpu")
    assert [x["key"] for x in first] == ["f0.npz", "f2.npz", "f4.npz", "sub/f1.npz", "sub/f3.npz"]
    for spelling in ("./z", str(tmp_path / "z"), "z/", "../" + tmp_path.name + "/z"):
        again = evaluate_files(graph, spelling, out=r, providers="cpu", resume=True)
        assert [x["outputs"] for x in again] == [x["outputs"] for x in first]
    assert len(read_results(r)) == 5  # no duplicates appended
    t = tmp_path / "t.jsonl"
    evaluate_files(graph, templates={"logits": "d/preds/{stem}.npy", "labels": "d/gt/{stem}.png"}, out=t, providers="cpu")
    evaluate_files(graph, templates={"logits": "./d/preds/{stem}.npy", "labels": f"{tmp_path}/d/gt/{{stem}}.png"},
                   out=t, providers="cpu", resume=True)
    assert [x["key"] for x in read_results(t)] == ["img00", "img01", "img02", "img03", "lonely"]


def test_symlink_loops_visit_each_file_once(tmp_path):
    root = tmp_path / "data"
    (root / "a" / "b").mkdir(parents=True)
    for p in ("x.npz", "a/y.npz", "a/b/z.npz"):
        np.savez(root / p, v=np.zeros(1))
    os.symlink(root, root / "self")  # a link to itself
    os.symlink(root, root / "a" / "b" / "up")  # a link to an ancestor
    os.symlink(root / "a", root / "again")  # a second name of a real folder
    os.symlink(root / "x.npz", root / "a" / "x_link.npz")  # a second name of a real file
    assert [k for _, k in npz_files(root)] == ["a/b/z.npz", "a/y.npz", "x.npz"]
    assert [k for _, k in npz_files(str(root / "**" / "*.npz"))] == ["a/b/z.npz", "a/y.npz", "x.npz"]
    samples = template_samples({"v": f"{root}/{{stem}}.npz"})
    assert [s.key for s in samples] == ["a/b/z", "a/y", "x"]
    assert [k for _, k in npz_files([root, root / "a", root / "self"])] == ["a/b/z.npz", "a/y.npz", "x.npz"]
    (tmp_path / "other").mkdir()
    np.savez(tmp_path / "other" / "x.npz", v=np.ones(1))  # another file with the key x.npz
    with pytest.raises(ValueError, match="have the same key 'x.npz'"):
        npz_files([root, tmp_path / "other"])


def test_nonfinite_outputs_are_null_marked_and_counted(graph, tmp_path, capsys):
    data = _voc_like(tmp_path / "d", n=4)
    scores = data["img01"][0].copy()
    scores[2, 0, 0] = np.nan
    np.save(tmp_path / "d" / "preds" / "img01.npy", scores)
    out = tmp_path / "r.jsonl"
    code = main(["eval", str(graph), *_templates(tmp_path / "d"), "--out", str(out), "--json", "--provider", "cpu"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 1 and summary["nonfinite"] == 1 and summary["failed"] == 1  # the failure: the lonely prediction
    text = out.read_text()
    assert "NaN" not in text and "Infinity" not in text
    (row,) = [r for r in read_results(out) if r["key"] == "img01"]
    assert row["nonfinite"] == ["confusion"] and row["error"] is None
    assert np.array(row["outputs"]["confusion"], dtype=float).shape == (C, C)
    assert all(v is None for line in row["outputs"]["confusion"] for v in line)
    del data["img01"]
    np.testing.assert_array_equal(summary["sum"]["confusion"], _numpy_confusion(data))  # left out of the sums
    code = main(["eval", str(graph), *_templates(tmp_path / "d"), "--out", str(tmp_path / "c.jsonl"), "--json",
                 "--provider", "cpu", "--check-finite"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 1 and summary["nonfinite"] == 0 and summary["failed"] == 2
    assert "input logits has 1 non-finite value (NaN or inf)" in {f["error"] for f in summary["failures"]}


def test_output_problems_are_one_line_errors(graph, tmp_path):
    _voc_like(tmp_path / "d", n=3)
    t = _templates(tmp_path / "d")

    def fails(res, words):
        lines = res.stderr.strip().splitlines()
        assert res.returncode == 2 and len(lines) == 1 and lines[0].startswith("lossgraph: error: "), res.stderr
        assert words in lines[0], lines[0]

    os.symlink("/dev/full", tmp_path / "full.jsonl")  # every write: ENOSPC
    fails(_cli("eval", graph, *t, "--out", tmp_path / "full.jsonl", "--provider", "cpu"),
          f"cannot write {tmp_path / 'full.jsonl'}: No space left on device")
    if os.geteuid() == 0:  # root writes through file modes: a read-only file system instead
        denied = "/sys/lossgraph-test.jsonl"
    else:
        (tmp_path / "ro").mkdir(mode=0o500)
        denied = tmp_path / "ro" / "r.jsonl"
    fails(_cli("eval", graph, *t, "--out", denied, "--provider", "cpu"), f"cannot write {denied}: Permission denied")

    out = tmp_path / "r.jsonl"
    assert _cli("eval", graph, *t, "--out", out, "--provider", "cpu").returncode == 1
    lines = out.read_text().splitlines(keepends=True)
    out.write_text(lines[0] + lines[1] + '{"file": "x", "outp\n' + "".join(lines[2:]))
    fails(_cli("eval", graph, *t, "--out", out, "--provider", "cpu", "--resume"), f"{out} line 3: not a JSON row")
    fails(_cli("summarize", out), f"{out} line 3: not a JSON row")


def test_csv_cut_inside_a_multibyte_file_name_resumes(graph, tmp_path):
    _voc_like(tmp_path / "d", n=4)
    for stem in ("img00", "img01", "img02"):  # non-ASCII stems
        for sub, ext in (("preds", "npy"), ("gt", "png")):
            os.rename(tmp_path / "d" / sub / f"{stem}.{ext}", tmp_path / "d" / sub / f"é_{stem}_日本.{ext}")
    out = tmp_path / "r.csv"
    t = _templates(tmp_path / "d")
    assert _cli("eval", graph, *t, "--out", out, "--provider", "cpu").returncode == 1
    clean = read_results(out)
    data = out.read_bytes()
    cut = data.index("日".encode()) + 1  # inside the three bytes of 日, in the first row
    out.write_bytes(data[:cut])
    res = _cli("eval", graph, *t, "--out", out, "--provider", "cpu", "--resume")
    assert res.returncode == 1, res.stderr
    rows = read_results(out)
    assert sorted(r["key"] for r in rows) == sorted(r["key"] for r in clean) and len(rows) == 5
    assert {r["key"]: r["outputs"] for r in rows} == {r["key"]: r["outputs"] for r in clean}


def test_readme_segmentation_commands(graph, tmp_path, monkeypatch, capsys):
    """The README's "Evaluate a segmentation dataset" commands, run as written on a small dataset."""
    import re
    import runpy
    import shlex
    import shutil
    from pathlib import Path

    section = (Path(__file__).resolve().parents[1] / "README.md").read_text().split("## Evaluate a segmentation dataset")[1]
    section = section.split("\n## ")[0]
    commands = [shlex.split(line)[1:] for line in re.search(r"```bash\n(.*?)```", section, re.S).group(1).splitlines()]
    data = _voc_like(tmp_path, n=6)
    monkeypatch.chdir(tmp_path)
    assert commands[0] == ["export", "confusion", "-o", "c.onnx", "--param", "ignore_index=255"]
    shutil.copy(graph, "c.onnx")  # the same graph, exported once per test session
    codes = [main(argv) for argv in commands[1:]]
    out = capsys.readouterr().out
    # the prediction without a mask fails in the whole runs, the summary and one of the two shards
    assert codes[:2] == [1, 1] and sorted(codes[2:4]) == [0, 1] and codes[4] == 1
    whole, merged = (json.loads(line) for line in out.splitlines() if line.startswith("{"))
    np.testing.assert_array_equal(whole["sum"]["confusion"], _numpy_confusion(data))
    assert whole["dataset"] == merged["dataset"] and whole["count"] == merged["count"] == 7
    assert (tmp_path / "report" / "report.md").exists()
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    (tmp_path / "example.py").write_text(code)
    runpy.run_path("example.py", run_name="__main__")
    np.testing.assert_allclose(float(capsys.readouterr().out), whole["dataset"]["miou"], rtol=1e-12)

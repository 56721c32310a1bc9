"""Dry run of benchmarks/cuda/gpu_run.py on the CPU: every step of the GPU run but the GPU.

prepare (graphs, the wheel split into parts) -> receive each part -> device --provider cpu (join and
sha256-check the parts, then environment, placement, parity, bench forward and --grad). The
onnxruntime-gpu wheel itself is not downloaded here: a small stand-in wheel goes through the same
split, receive, join, sha256 check and ``pip install --target`` (with lossgraph itself), and the
checks then run on that installed lossgraph with the onnxruntime already here (the cp312 wheel does
not install into this Python). One catalog entry, to keep CI short (about a minute on 2 busy
cores); the GPU run takes them all.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from lossgraph import catalog
from lossgraph.parity import case_key

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "cuda", "gpu_run.py")
sys.path.insert(0, os.path.dirname(SCRIPT))
import gpu_run


def _run(*args: str) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, SCRIPT, *args], check=False, capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    return r


@pytest.mark.parametrize("name", ["binary_xloss"])  # one entry: the GPU run takes them all
def test_gpu_run_dry_run_on_cpu(name, graphs, tmp_path):
    spec = catalog.get(name)
    # the graphs the run opens, from the session cache (no export of its own)
    os.makedirs(tmp_path / "run" / "graphs")
    for n, params, dims, grad in gpu_run.graph_keys([name]):
        path = graphs.get(spec, params, dims, grad)
        shutil.copy(path, tmp_path / "run" / "graphs" / os.path.basename(path))
    wheel = stand_in_wheel(tmp_path)
    payload = wheel.read_bytes()

    out = _run("prepare", "--dir", str(tmp_path / "run"), "--names", name, "--wheel", str(wheel), "--part-mib", "1",
               "--reuse").stdout
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert len(manifest["parts"]) == 3 and manifest["graphs"] == len({case_key(spec, p, d, g) for _, p, d, g in gpu_run.graph_keys([name])})
    assert "device calls" in out and out.count("receive") == 3  # two receive calls and --receive on the last
    stage = tmp_path / "stage"
    for part in manifest["parts"][:-1]:
        _run("receive", str(tmp_path / "run" / part), "--stage", str(stage))
    r = _run("device", "--dir", str(tmp_path / "run"), "--out", str(tmp_path / "out"), "--provider", "cpu",
             "--stage", str(stage), "--receive", str(tmp_path / "run" / manifest["parts"][-1]), "--repeat", "1",
             "--bench-shape", "B=2,H=64,W=64")
    assert (stage / wheel.name).read_bytes() == payload  # joined and checked
    # installed with pip --target, and the run used that copy of lossgraph (its kernel table included)
    assert (stage / "site" / "stand_in_ort" / "__init__.py").is_file()
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    installed = results["environment"]["lossgraph_file"]
    assert installed.startswith(str(stage / "site")) and (stage / "site" / "lossgraph" / "export" / "cuda_kernels.json").is_file()
    assert set(results) == {"environment", "kernel registry", "placement", "reference JIT", "parity", "bench --mode forward", "bench --mode train"}
    assert set(results["reference JIT"]) == {name}
    assert all("error" not in v for v in results.values() if isinstance(v, dict)), r.stdout[-4000:]
    # placement: every graph ran, every node on the asked provider
    assert results["placement"] and all(p["nodes"] > 0 and p["elsewhere"] == 0 for p in results["placement"].values())
    # parity: every case at every run shape, all comparisons made and passing
    rows = results["parity"]
    assert len(rows) == sum(len(c.run_dims) for c in spec.cases) and all(r["ok"] for r in rows)
    assert all({"torch~ref", "onnx~torch", "onnx grad~ref"} <= set(r["errors"]) for r in rows)
    # bench: the CLI ran torch and onnx for the entry, forward and --grad, and wrote its results
    for folder in ("bench", "bench-grad"):
        saved = json.loads((tmp_path / "out" / folder / "results.json").read_text())
        timings = saved["results"][0]["timings"] if "results" in saved else saved[0]["timings"]
        assert {"torch", "onnx"} <= set(timings) and all(timings[k]["median_s"] > 0 for k in ("torch", "onnx"))
    report = (tmp_path / "out" / "report.md").read_text()
    assert "## parity" in report and "PASS" in report and "onnx/torch" in report


def stand_in_wheel(folder) -> os.PathLike:
    """A real, installable wheel of 2.5 MiB (a package and a stored random blob) standing in for
    onnxruntime-gpu: it goes through split, receive, join, sha256 and ``pip install --target``."""
    path = folder / "stand_in_ort-0.0.0-py3-none-any.whl"
    files = {"stand_in_ort/__init__.py": b"", "stand_in_ort/blob.bin": np.random.default_rng(0).bytes(int(2.5 * 2**20)),
             "stand_in_ort-0.0.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: stand-in-ort\nVersion: 0.0.0\n",
             "stand_in_ort-0.0.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = "".join(f"{k},sha256={base64.urlsafe_b64encode(hashlib.sha256(v).digest()).rstrip(b'=').decode()},{len(v)}\n"
                     for k, v in files.items())
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for k, v in files.items():
            z.writestr(k, v)
        z.writestr("stand_in_ort-0.0.0.dist-info/RECORD", record + "stand_in_ort-0.0.0.dist-info/RECORD,,\n")
    return path


def test_join_refuses_a_missing_or_changed_part(tmp_path):
    src = tmp_path / "w.whl"
    src.write_bytes(b"x" * 3000 + b"y" * 3000)
    parts = gpu_run.split(str(src), str(tmp_path / "parts"), part_mib=1)
    manifest = {"wheel": "w.whl", "sha256": gpu_run.sha256(str(src)), "parts": [os.path.relpath(p, tmp_path) for p in parts]}
    with pytest.raises(RuntimeError, match="not received"):
        gpu_run.join(manifest, str(tmp_path / "stage"))
    for p in parts:
        gpu_run.receive(p, str(tmp_path / "stage"))
    with open(gpu_run.join(manifest, str(tmp_path / "stage")), "rb") as f:
        assert f.read() == src.read_bytes()
    (tmp_path / "stage" / "part-00").write_bytes(b"z" * 6000)
    with pytest.raises(RuntimeError, match="sha256"):
        gpu_run.join(manifest, str(tmp_path / "stage"))

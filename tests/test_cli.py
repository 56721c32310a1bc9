"""The lossgraph command line: commands work, mistakes give one line and exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import lossgraph as lg
from lossgraph import reference as ref
from lossgraph.cli import main


def _run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_list(capsys):
    code, out, _ = _run(capsys, "list")
    assert code == 0
    names = [line.split()[0] for line in out.splitlines()]
    assert names == lg.catalog.names()


@pytest.fixture(scope="module")
def focal_graph(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "focal.onnx"
    assert main(["export", "sigmoid_focal", "-o", str(path), "--param", "gamma=1.5", "--param", "reduction=sum"]) == 0
    return path


def test_export_eval_inspect(capsys, focal_graph, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 5, 4)).astype(np.float32)
    t = (rng.random((2, 3, 5, 4)) < 0.5).astype(np.float32)
    np.savez(tmp_path / "in.npz", logits=x, targets=t)
    code, out, _ = _run(capsys, "eval", str(focal_graph), str(tmp_path / "in.npz"), "--json")
    assert code == 0
    got = json.loads(out)["outputs"]["loss"]
    assert got == pytest.approx(ref.sigmoid_focal(x.astype(np.float64), t, gamma=1.5, reduction="sum"), rel=1e-5)
    code, out, _ = _run(capsys, "inspect", str(focal_graph), "--json")
    info = json.loads(out)
    assert code == 0
    assert info["inputs"][0] == {"name": "logits", "dtype": "float32", "shape": ["B", "C", "H", "W"]}
    assert info["metadata"]["lossgraph.loss"] == "sigmoid_focal"
    assert json.loads(info["metadata"]["lossgraph.params"]) == {"alpha": 0.25, "gamma": 1.5, "reduction": "sum"}
    assert info["opset"]["ai.onnx"] >= 18 and info["ops"]
    code, out, _ = _run(capsys, "inspect", str(focal_graph))
    assert "logits" in out and "ops:" in out


def test_export_with_grad(capsys, tmp_path):
    path = tmp_path / "g.onnx"
    code, out, _ = _run(capsys, "export", "lovasz_hinge", "-o", str(path), "--with-grad", "--param", "per_image=false")
    assert code == 0 and "grad_logits" in out


def test_check_one_loss(capsys, tmp_path):
    code, out, _ = _run(capsys, "check", "sigmoid_focal", "--keep", str(tmp_path))
    assert code == 0
    assert out.count("PASS") == sum(len(c.run_dims) for c in lg.catalog.get("sigmoid_focal").cases)
    assert "0 failed" in out
    assert len(list(tmp_path.glob("*.onnx"))) == 4


@pytest.mark.parametrize(
    "argv,words",
    [
        (["export", "no_such_loss", "-o", "x.onnx"], "unknown loss 'no_such_loss'"),
        (["export", "sigmoid_focal", "-o", "x.onnx", "--param", "beta=2"], "unknown parameter(s) beta"),
        (["export", "sigmoid_focal", "-o", "x.onnx", "--param", "nonsense"], "--param takes key=value"),
        (["eval", "missing.onnx", "missing.npz"], "no such file"),
        (["inspect", "missing.onnx"], "no such file"),
        (["check"], "check takes loss names or --all"),
        (["check", "dice", "--runtime", "onnxruntime,tensorrt"], "--runtime takes names from onnxruntime, openvino"),
        (["check", "dice", "--jobs", "0"], "--jobs must be >= 1"),
        (["export", "-o", "x.onnx"], "export takes a loss name or --all"),
        (["export", "--all", "-o", "graphs", "--param", "gamma=2"], "export --all takes no --param"),
    ],
)
def test_user_mistakes_give_one_line(capsys, argv, words):
    code, _, err = _run(capsys, *argv)
    assert code == 2
    assert err.startswith("lossgraph: error: ") and words in err and len(err.strip().splitlines()) == 1


def test_eval_wrong_inputs(capsys, focal_graph, tmp_path):
    np.savez(tmp_path / "bad.npz", logits=np.zeros((2, 3, 4), np.float32), targets=np.zeros((2, 3, 4), np.float32))
    code, _, err = _run(capsys, "eval", str(focal_graph), str(tmp_path / "bad.npz"))
    assert code == 2 and "logits must have shape (B, C, H, W); got (2, 3, 4)" in err
    (tmp_path / "corrupt.npz").write_bytes(b"PK\x03\x04 not really")
    code, _, err = _run(capsys, "eval", str(focal_graph), str(tmp_path / "corrupt.npz"))
    assert code == 2 and "not a readable .npz" in err
    (tmp_path / "foreign.onnx").write_bytes(b"\x00\x01\x02" * 50)
    code, _, err = _run(capsys, "inspect", str(tmp_path / "foreign.onnx"))
    assert code == 2 and "not a readable ONNX model" in err


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.strip() == f"lossgraph {lg.__version__}"


def test_console_script_no_traceback():
    out = subprocess.run([sys.executable, "-m", "lossgraph.cli", "export", "nope", "-o", "x.onnx"], capture_output=True, text=True)
    assert out.returncode == 2 and "Traceback" not in out.stderr


def _subprocess(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120)


def test_python_m_lossgraph_is_the_cli_and_help_is_plain_text():
    """``python -m lossgraph`` runs the console script's ``main``: same output, same exit codes;
    ``--help`` carries no RST markup."""
    listed = _subprocess("-m", "lossgraph", "list")
    assert listed.returncode == 0
    assert [line.split()[0] for line in listed.stdout.splitlines()] == lg.catalog.names()
    bad = _subprocess("-m", "lossgraph", "export", "no_such_loss", "-o", "x.onnx")
    assert bad.returncode == 2
    assert bad.stderr.startswith("lossgraph: error: unknown loss 'no_such_loss'")
    helped = _subprocess("-m", "lossgraph", "--help")
    assert helped.returncode == 0 and "lossgraph command line" in helped.stdout
    assert "``" not in helped.stdout and "`" not in helped.stdout


def test_list_imports_neither_torch_nor_numba():
    """The catalog loads lazily: listing it imports no torch, no numba, no reference."""
    code = (
        "import sys\n"
        "from lossgraph.cli import main\n"
        "assert main(['list']) == 0\n"
        "print(sorted(m for m in ('torch', 'numba', 'lossgraph.reference') if m in sys.modules))\n"
    )
    out = _subprocess("-c", code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "[]"

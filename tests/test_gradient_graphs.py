"""Gradient graphs: the numpy + onnxruntime training demo learns, without torch."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import lossgraph as lg

ROOT = Path(__file__).resolve().parents[1]


def test_numpy_onnxruntime_training_demo_learns(graphs):
    """Train the demo's linear segmenter for 25 SGD steps on the exported Lovász-Softmax gradient
    graph, in a process that never imports torch: the loss falls by more than a third."""
    spec = lg.catalog.get("lovasz_softmax")
    params = spec.resolve({"from_logits": True, "per_image": True})
    graph = graphs.get(spec, params, spec.export_dims, True)
    code = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(ROOT / "examples")!r})
        from train_numpy_ort import train
        losses = train({graph!r}, steps=25)
        assert "torch" not in sys.modules
        print(losses[0], losses[-1])
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    first, last = map(float, out.stdout.split())
    assert last < first * 2 / 3, (first, last)

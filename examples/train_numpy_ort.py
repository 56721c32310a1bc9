"""Train a tiny per-pixel linear segmenter with numpy + onnxruntime only, using a gradient graph.

The loss and its gradient come from an exported ONNX graph (``lossgraph export lovasz_softmax
--with-grad``); the model (logits = W · features + b at every pixel) and SGD are plain numpy. Torch
is used once, to export the graph, unless a graph path is given.

    python examples/train_numpy_ort.py [--graph lovasz_grad.onnx] [--steps 60]
"""

from __future__ import annotations

import argparse
import sys
import tempfile

import numpy as np


def make_data(rng: np.random.Generator, b=4, f=5, c=3, h=12, w=12):
    """Features whose first c channels are noisy indicators of the true class."""
    labels = rng.integers(0, c, size=(b, h, w))
    feats = rng.standard_normal((b, f, h, w)) * 0.8
    feats[:, :c] += 1.5 * (labels[:, None] == np.arange(c)[None, :, None, None])
    return feats.astype(np.float32), labels


def export_graph(path: str) -> str:
    import lossgraph as lg
    from lossgraph.export import to_onnx

    spec = lg.catalog.get("lovasz_softmax")
    params = {"from_logits": True, "per_image": True}
    to_onnx(spec.build(**params), spec.example_inputs(params=params), path, with_grad=True)
    return path


def train(graph: str, steps: int = 60, lr: float = 2.0, seed: int = 0) -> list[float]:
    from lossgraph.export import OnnxLoss

    rng = np.random.default_rng(seed)
    feats, labels = make_data(rng)
    c = 3
    weight = rng.standard_normal((c, feats.shape[1])).astype(np.float32) * 0.01
    bias = np.zeros(c, np.float32)
    run = OnnxLoss(graph, providers="auto")
    losses = []
    for _ in range(steps):
        logits = np.einsum("cf,bfhw->bchw", weight, feats) + bias[None, :, None, None]
        out = run.run(probas=logits.astype(np.float32), labels=labels)
        g = out["grad_probas"]  # d loss / d logits, (B, C, H, W)
        weight -= lr * np.einsum("bchw,bfhw->cf", g, feats)
        bias -= lr * g.sum(axis=(0, 2, 3))
        losses.append(float(out["loss"]))
    return losses


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--graph", help="a lovasz_softmax gradient graph (from_logits=True); exported if absent")
    p.add_argument("--steps", type=int, default=60)
    args = p.parse_args(argv)
    graph = args.graph or export_graph(tempfile.mkdtemp() + "/lovasz_grad.onnx")
    losses = train(graph, steps=args.steps)
    for i in range(0, len(losses), max(1, len(losses) // 10)):
        print(f"step {i:3d}  loss {losses[i]:.4f}")
    print(f"final      loss {losses[-1]:.4f} (from {losses[0]:.4f})")
    return 0 if losses[-1] < losses[0] else 1


if __name__ == "__main__":
    sys.exit(main())

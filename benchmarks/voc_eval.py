"""Dataset evaluation speed: ``lossgraph eval`` with the ``confusion`` graph against the loop a user
would otherwise write (torch + torchmetrics ``MulticlassJaccardIndex``) over the same files.

Makes a synthetic VOC-like set (default 1,000 samples: 21x128x128 float16 ``.npy`` scores + uint8 PNG
masks with 255 = ignore), exports ``confusion(ignore_index=255)``, then times, interleaved, the
in-process ``evaluate_files`` (what the CLI runs, results written to a .jsonl), the ``lossgraph eval``
command end to end (process start included), and the torchmetrics loop; prints files/s, the ratio
from this one run, and checks both give the same mIoU.

    python benchmarks/voc_eval.py [--n 1000] [--dir DIR] [--repeat 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image

C, IGNORE, SIZE = 21, 255, 128


def make_dataset(root: str, n: int, seed: int = 0) -> None:
    """n samples: preds/NNNN.npy float16 (21, 128, 128) scores, gt/NNNN.png uint8 masks (5% ignored)."""
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(root, "preds"), exist_ok=True)
    os.makedirs(os.path.join(root, "gt"), exist_ok=True)
    for i in range(n):
        present = rng.choice(C, size=3, replace=False)
        lab = present[rng.integers(0, 3, (SIZE, SIZE))].astype(np.uint8)
        scores = rng.normal(size=(C, SIZE, SIZE)).astype(np.float32)
        np.put_along_axis(scores, lab[None].astype(np.int64), 2.5, 0)
        lab[rng.random((SIZE, SIZE)) < 0.05] = IGNORE
        np.save(os.path.join(root, "preds", f"{i:04d}.npy"), scores.astype(np.float16))
        Image.fromarray(lab, mode="L").save(os.path.join(root, "gt", f"{i:04d}.png"))


def torchmetrics_loop(root: str) -> float:
    """The loop a user writes: load, argmax, MulticlassJaccardIndex.update; returns the mIoU."""
    import torch
    from torchmetrics.classification import MulticlassJaccardIndex

    metric = MulticlassJaccardIndex(num_classes=C, ignore_index=IGNORE, average="macro")
    for name in sorted(os.listdir(os.path.join(root, "preds"))):
        stem = name[:-4]
        scores = torch.from_numpy(np.load(os.path.join(root, "preds", name))).float()
        target = torch.from_numpy(np.array(Image.open(os.path.join(root, "gt", f"{stem}.png")))).long()
        metric.update(scores.argmax(0)[None], target[None])
    return float(metric.compute())


def lossgraph_eval(graph: str, root: str, out: str) -> float:
    from lossgraph.export import OnnxLoss, evaluate_files, run_header, summarize

    if os.path.exists(out):
        os.remove(out)
    run = OnnxLoss(graph, providers="cpu")
    rows = evaluate_files(run, templates=templates(root), out=out)
    return summarize(rows, run_header(run, run.outputs))["dataset"]["miou"]


def templates(root: str) -> dict[str, str]:
    return {"logits": os.path.join(root, "preds", "{stem}.npy"), "labels": os.path.join(root, "gt", "{stem}.png")}


def cli(graph: str, root: str, out: str) -> None:
    t = templates(root)
    subprocess.run([sys.executable, "-m", "lossgraph.cli", "eval", graph, f"--input=logits={t['logits']}",
                    f"--input=labels={t['labels']}", "--out", out, "--provider", "cpu"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--dir", help="dataset folder (made if absent; default: a temporary one)")
    p.add_argument("--repeat", type=int, default=2, help="interleaved rounds; the fastest of each is kept")
    args = p.parse_args()
    tmp = tempfile.mkdtemp(prefix="voc_eval_")
    root = args.dir or os.path.join(tmp, "voc")
    if not os.path.isdir(os.path.join(root, "preds")):
        t0 = time.perf_counter()
        make_dataset(root, args.n)
        print(f"made {args.n} samples in {root} ({time.perf_counter() - t0:.1f} s)")
    n = len(os.listdir(os.path.join(root, "preds")))

    from lossgraph import catalog
    from lossgraph.export import to_onnx

    spec = catalog.get("confusion")
    graph = os.path.join(tmp, "confusion.onnx")
    params = spec.resolve({"ignore_index": IGNORE})
    to_onnx(spec.build(**params), spec.example_inputs(params=params), graph)

    torchmetrics_loop(root)  # warm the page cache and both libraries' first calls
    lossgraph_eval(graph, root, os.path.join(tmp, "warm.jsonl"))
    best = {"lossgraph evaluate_files": np.inf, "lossgraph eval (CLI, process start included)": np.inf,
            "torch + torchmetrics loop": np.inf}
    miou = {}
    for _ in range(args.repeat):
        for name in best:
            t0 = time.perf_counter()
            if name.startswith("torch"):
                miou["torchmetrics"] = torchmetrics_loop(root)
            elif "CLI" in name:
                cli(graph, root, os.path.join(tmp, "cli.jsonl"))
            else:
                miou["lossgraph"] = lossgraph_eval(graph, root, os.path.join(tmp, "r.jsonl"))
            best[name] = min(best[name], time.perf_counter() - t0)
    load = open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else ["?"]
    print(f"{n} samples of {C}x{SIZE}x{SIZE} float16 scores + uint8 PNG masks; load average {' '.join(load)}; "
          f"{os.cpu_count()} CPUs; fastest of {args.repeat} interleaved rounds")
    base = best["torch + torchmetrics loop"]
    for name, s in best.items():
        print(f"  {name:<48} {n / s:8.1f} files/s   {base / s:5.2f}x the torchmetrics loop")
    print(f"  mIoU: lossgraph {miou['lossgraph']:.6f}, torchmetrics {miou['torchmetrics']:.6f}")
    assert abs(miou["lossgraph"] - miou["torchmetrics"]) < 1e-5, miou


if __name__ == "__main__":
    main()

"""Where the time of the vectorised Lovász-Softmax goes, against the source's per-image/per-class loop.

For B images, C classes, H×W pixels (per_image=True, so B·C groups of H·W pixels): the whole loss
vectorised (ours), the source loop, and the sort alone done both ways — one batched sort of the
(B, C, P) error tensor as the loss does it (``lovasz._sort_descending``: the int32 view in eager) versus
B·C one-dimensional ``torch.sort`` calls, as the loop does them. Both sort the
same B·C·P numbers, so the sort can only gain from threads (and the loop's Python overhead is small
next to a 65k sort): the ratio "batched sort / loop sorts" bounds what vectorising can win.
``numpy.sort`` (values only, SIMD) is printed as what a faster sort primitive would give.

With ``--present K`` each image's labels use K of the C classes: the loop skips absent classes, and
the vectorised loss marks their groups invalid, so their rows sort as constants (several times faster).

    python benchmarks/lovasz_scaling.py [--threads N] [--repeat R] [--sizes 64,128,256] [--batches 1,8] [--present K]
                                        [--malloc reuse] [--mode train|forward]

``--mode train`` (default) times ours and the loop forward + backward (the gradient with respect to
the probabilities), ``forward`` the value alone; the sort columns are forward-only either way.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from lossgraph import baselines, lovasz
from lossgraph.bench import MALLOC_MODES, set_malloc, set_threads

from _timing import medians


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--sizes", default="64,128,256")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--classes", type=int, default=21)
    ap.add_argument("--present", type=int, default=None,
                    help="classes present per image (default: all, uniform labels); realistic masks have few")
    ap.add_argument("--malloc", default="default", choices=MALLOC_MODES)
    ap.add_argument("--mode", default="train", choices=["train", "forward"])
    args = ap.parse_args()
    threads = set_threads(args.threads)
    set_malloc(args.malloc)
    source = baselines.baseline_of("lovasz", "lovasz_softmax")
    present = args.present or args.classes
    print(f"torch {torch.__version__}, {threads} threads, malloc {args.malloc}, C={args.classes} ({present} present per image), "
          f"per_image=True, {args.mode}; medians in ms")
    print("| B | H=W | ours | source loop | ours/source | batched sort | loop of 1-D sorts | sort share of ours | numpy sort (values) |")
    print("|---|---|---|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for b in map(int, args.batches.split(",")):
        for s in map(int, args.sizes.split(",")):
            z = torch.from_numpy(rng.standard_normal((b, args.classes, s, s)).astype(np.float32))
            probas = z.softmax(1)
            labels = rng.integers(0, args.classes, (b, s, s))
            if args.present:  # each image uses `present` of the C classes
                chosen = np.stack([rng.choice(args.classes, args.present, replace=False) for _ in range(b)])
                labels = np.take_along_axis(chosen, (labels % args.present).reshape(b, -1), 1).reshape(b, s, s)
            labels = torch.from_numpy(labels)
            errors = probas.reshape(b, args.classes, -1).contiguous()
            flat = errors.reshape(-1, errors.shape[-1])
            arr = errors.numpy()

            def timed(fn):
                def call():
                    if args.mode == "forward":
                        with torch.no_grad():
                            return fn(probas, labels, per_image=True)
                    leaf = probas.detach().requires_grad_(True)
                    return torch.autograd.grad(fn(leaf, labels, per_image=True), leaf)

                return call

            ours, loop = timed(lovasz.lovasz_softmax), timed(source)

            m = medians(
                {
                    "ours": ours,
                    "loop": loop,
                    "sort": lambda: lovasz._sort_descending(errors),
                    "sorts": lambda: [torch.sort(row, descending=True) for row in flat],
                    "np": lambda: np.sort(arr, axis=-1),
                },
                args.repeat,
            )
            ms = {k: v * 1e3 for k, v in m.items()}
            print(
                f"| {b} | {s} | {ms['ours']:.1f} | {ms['loop']:.1f} | {m['ours'] / m['loop']:.2f}× | {ms['sort']:.1f} | "
                f"{ms['sorts']:.1f} | {m['sort'] / m['ours']:.0%} | {ms['np']:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()

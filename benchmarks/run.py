"""The benchmark run behind RESULTS.md: every catalog entry at its benchmark size, plus the variants the
targets name (Lovász-Softmax per_image=True with B=8), in one process; writes ``results/``.

    python benchmarks/run.py [--threads N] [--repeat R] [--out benchmarks/results] [--mode train|forward] [--malloc reuse]
                             [--cold-jit]

``--cold-jit`` points Numba's cache at an empty folder before anything imports Numba, so the
reference's first call (``ref JIT s``) is the real compile time rather than a load from the
``cache=True`` files of earlier runs.
"""

from __future__ import annotations

import argparse
import os
import tempfile

#: (name, parameters) benchmarked besides every entry's defaults
VARIANTS = (
    ("lovasz_softmax", {"per_image": True}),
    # kornia's lovasz_softmax_loss: the definition its peer column compares against
    ("lovasz_softmax", {"per_image": True, "classes": "all", "from_logits": True}),
    ("box_iou", {"pairwise": True, "output": "value"}),
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--mode", default="train", choices=["train", "forward"])
    ap.add_argument("--names", help="comma-separated catalog names (default: all, and the variants)")
    ap.add_argument("--variants-only", action="store_true", help="run only the VARIANTS of the named entries")
    ap.add_argument("--backends", help="comma-separated subset of torch,onnx,reference,source,peers (default: all)")
    ap.add_argument("--provider", default="cpu")
    ap.add_argument("--malloc", default="default", choices=["default", "reuse"])
    ap.add_argument("--cold-jit", action="store_true", help="compile the Numba kernels afresh (empty cache)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = ap.parse_args()
    if args.cold_jit:
        os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="lossgraph-numba-")
    from lossgraph import bench, catalog  # after NUMBA_CACHE_DIR: the reference imports Numba

    kwargs = dict(repeat=args.repeat, threads=args.threads, mode=args.mode, provider=args.provider, malloc=args.malloc)
    if args.backends:
        kwargs["backends"] = args.backends.split(",")
    names = args.names.split(",") if args.names else catalog.names()
    jobs = [(n, {}) for n in names] + [v for v in VARIANTS if v[0] in names]
    if args.variants_only:  # the named entries' variants alone (e.g. Lovász at kornia's definition)
        jobs = [v for v in VARIANTS if v[0] in names]
    results = []
    for name, params in jobs:
        r = bench.bench_spec(catalog.get(name), params=params, **kwargs)
        print(bench.summary(r), flush=True)
        results.append(r)
    print(bench.format_table(results))
    paths = bench.write_results(results, args.out)
    print("wrote", ", ".join(paths.values()))


if __name__ == "__main__":
    main()

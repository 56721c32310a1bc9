"""The ``lossgraph`` command line: list, export, eval, check, bench, inspect.

User mistakes (unknown loss, bad parameter, wrong inputs, unreadable files) print one line
``lossgraph: error: ...`` and exit with status 2; failed parity checks exit with status 1.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import catalog


class UserError(Exception):
    """A mistake in the command line or its files: reported in one line, no traceback."""


def parse_params(items: Sequence[str]) -> dict[str, Any]:
    """``["per_image=true", "classes=[0,2]", "reduction=sum"]`` -> dict (JSON values, else strings)."""
    params: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UserError(f"--param takes key=value; got {item!r}")
        try:
            params[key] = json.loads(raw)
        except json.JSONDecodeError:
            params[key] = {"True": True, "False": False, "None": None}.get(raw, raw)
    return params


def parse_dims(text: str | None) -> dict[str, int] | None:
    if not text:
        return None
    try:
        return {k: int(v) for k, v in (part.split("=") for part in text.split(","))}
    except ValueError:
        raise UserError(f"--dims takes NAME=SIZE,...; got {text!r}") from None


# --- commands ---------------------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    for spec in catalog.specs():
        ins = ", ".join(f"{i.name}{tuple(i.shape)}" for i in spec.input_specs())
        print(f"{spec.name:<18} {spec.family:<10} {ins}")
        if args.verbose:
            print(f"{'':<18} params: {json.dumps(dict(spec.params))}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    if args.all == bool(args.name):
        raise UserError("export takes a loss name or --all")
    if args.all:
        return _export_bundle(args)
    from lossgraph.export import to_onnx

    spec = catalog.get(args.name)
    params = spec.resolve(parse_params(args.param))
    dims = spec.check_dims(parse_dims(args.dims) or {}, params)
    module = spec.build(**params)
    example = spec.example_inputs(dims, params=params)
    t0 = time.perf_counter()
    model = to_onnx(module, example, args.output, opset=args.opset, with_grad=args.with_grad)
    outs = [o.name for o in model.graph.output]
    took = time.perf_counter() - t0
    print(f"wrote {args.output}: {spec.name} {json.dumps(params)} -> {', '.join(outs)} ({took:.1f} s)")
    return 0


def _export_bundle(args: argparse.Namespace) -> int:
    """``export --all -o DIR``: the graph bundle (model-zoo layout and manifest.json)."""
    from lossgraph.export.bundle import write_bundle

    if args.param or args.dims or args.opset:
        raise UserError("export --all takes no --param, --dims or --opset (each entry uses its catalog parameters)")
    if os.path.isfile(args.output):
        raise UserError(f"export --all -o takes a directory; {args.output} is a file")
    jobs = _jobs(args.jobs)
    t0 = time.perf_counter()

    def progress(entry: dict) -> None:
        print(f"  {entry['folder']}: {entry['bytes'] / 1e3:.0f} kB, {entry['export_seconds']:.1f} s", file=sys.stderr, flush=True)

    manifest = write_bundle(args.output, with_grad=args.with_grad, jobs=jobs, progress=progress)
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(args.output) for f in fs)
    print(f"wrote {args.output}: {len(manifest['graphs'])} graphs, {size / 1e6:.1f} MB, "
          f"{time.perf_counter() - t0:.1f} s in {jobs} process(es)")
    return 0


def parse_mapping(items: Sequence[str]) -> dict[str, str]:
    """``["logits=pred", "labels=gt"]`` -> ``{"logits": "pred", "labels": "gt"}`` (graph input = array name)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise UserError(f"--map takes INPUT=ARRAY (graph input = array name in the files); got {item!r}")
        out[key] = value
    return out


class _PlainProgress:
    """Progress for logs (stderr not a terminal): a line every ~5 % and one per failed file.
    With ``echo`` (no results file) each row also goes to stdout as a JSON line."""

    echo = False

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.done = self.failed = self.total = self.skipped = 0

    def start(self, total: int, skipped: int) -> None:
        self.total, self.skipped = total, skipped
        self.step = max(10, (total - skipped) // 20)
        extra = f" ({skipped} already in the results, skipped)" if skipped else ""
        print(f"eval: {total - skipped} files to evaluate{extra}", file=sys.stderr, flush=True)

    def update(self, row: dict[str, Any]) -> None:
        if self.echo:
            print(json.dumps(row), flush=True)
        self.done += 1
        self.failed += bool(row["error"])
        if row["error"]:
            print(f"eval: FAILED {row['file']}: {row['error']}", file=sys.stderr, flush=True)
        if self.done % self.step == 0 or self.done == self.total - self.skipped:
            rate = self.done / max(time.perf_counter() - self.t0, 1e-9)
            print(f"eval: {self.done}/{self.total - self.skipped} files, {self.failed} failed, {rate:.1f} files/s",
                  file=sys.stderr, flush=True)

    def close(self) -> None:
        pass


class _BarProgress(_PlainProgress):
    """A tqdm bar on a terminal; failed files are printed above it."""

    def start(self, total: int, skipped: int) -> None:
        from tqdm import tqdm

        self.failed = 0
        sized = shutil.get_terminal_size((0, 0)).columns > 0  # a pty with no size: tqdm would draw nothing
        self.bar = tqdm(total=total, initial=skipped, unit="file", desc="eval", file=sys.stderr,
                        dynamic_ncols=sized, ncols=None if sized else 100)

    def update(self, row: dict[str, Any]) -> None:
        if self.echo:
            self.bar.write(json.dumps(row), file=sys.stdout)
        if row["error"]:
            self.failed += 1
            self.bar.write(f"FAILED {row['file']}: {row['error']}", file=sys.stderr)
            self.bar.set_postfix(failed=self.failed, refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        if hasattr(self, "bar"):
            self.bar.close()


def _single_file(args: argparse.Namespace) -> bool:
    """The original form ``eval F.onnx INPUTS.npz``: one existing file, no results file, no sharding."""
    return (len(args.inputs) == 1 and os.path.isfile(args.inputs[0]) and not args.input
            and not (args.out or args.shard or args.resume or args.report or args.workers or args.scheduler))


def _dask_client(args: argparse.Namespace) -> Any:
    """The Dask client of ``--workers N`` (a new local cluster) or ``--scheduler ADDR`` (an existing
    one), as a context manager; ``nullcontext(None)`` for the in-process run."""
    if args.workers is not None and args.scheduler:
        raise UserError("--workers starts a local cluster, --scheduler uses an existing one: give one of them")
    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers takes a count >= 1; got {args.workers}")
    if args.graph_path and not (args.workers or args.scheduler):
        raise UserError("--graph-path needs --workers or --scheduler")
    if args.workers is None and not args.scheduler:
        return contextlib.nullcontext(None)
    from lossgraph.export.distributed import open_client

    return open_client(args.workers, args.scheduler)


def print_summary(summary: dict[str, Any], stream: Any) -> None:
    """The human summary of a batch: counts, means, the dataset metrics, the first failures."""
    means = ", ".join(f"{k} {v:.8g}" for k, v in summary["mean"].items())
    extra = f", {summary['nonfinite']} with non-finite outputs" if summary["nonfinite"] else ""
    print(f"{summary['count']} files: {summary['ok']} ok, {summary['failed']} failed{extra}" + (f"; mean {means}" if means else ""),
          file=stream)
    for k, v in summary.get("pixel_mean", {}).items():
        print(f"pixel-weighted mean {k} {v:.8g}", file=stream)
    ds = summary.get("dataset")
    if ds:
        fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
        print(f"dataset ({ds['output']}, {ds['classes']} classes, {ds['pixels']:.0f} pixels): miou {fmt(ds['miou'])}, "
              f"mdice {fmt(ds['mdice'])}, pixel accuracy {fmt(ds['pixel_accuracy'])}", file=stream)
        print("  iou per class: " + " ".join(fmt(v) for v in ds["iou"]), file=stream)
        if ds["absent"]:
            print(f"  absent classes (no ground truth, no prediction): {', '.join(map(str, ds['absent']))}", file=stream)
    for f in summary["failures"][:20]:
        print(f"failed: {f['file']}: {f['error']}", file=stream)
    if summary["failed"] > 20:
        print(f"... and {summary['failed'] - 20} more failed files", file=stream)


def _dump(obj: Any) -> str:
    from lossgraph.export.summary import strict_json

    return json.dumps(strict_json(obj), allow_nan=False)


def cmd_eval(args: argparse.Namespace) -> int:
    from lossgraph.export import OnnxLoss, evaluate_files, run_header, summarize
    from lossgraph.export.samples import parse_templates

    run = OnnxLoss(args.model, providers=args.provider)
    mapping = parse_mapping(args.map)
    outputs = [o for o in args.outputs.split(",") if o] if args.outputs else None
    templates = parse_templates(args.input) if args.input else None
    if templates and args.inputs:
        raise UserError("give .npz inputs or --input NAME=TEMPLATE, not both")
    if not templates and not args.inputs:
        raise UserError("eval needs .npz inputs (files, directories, globs) or --input NAME=TEMPLATE")
    if _single_file(args):
        (path,) = args.inputs
        (row,) = evaluate_files(run, path, mapping=mapping, outputs=outputs, check_finite=args.check_finite)
        if row["error"]:
            raise UserError(f"{path}: {row['error']}")
        if args.json:
            print(_dump({"file": path, "provider": run.provider, "outputs": row["outputs"], "seconds": row["seconds"]}))
        else:
            for k, v in row["outputs"].items():
                print(f"{k}: {v:.8g}" if isinstance(v, float) else f"{k}: array{np.shape(v)} mean {np.nanmean(np.array(v, float)):.8g}")
        return 0

    if args.resume and not args.out:
        raise UserError("--resume needs --out (the results file to continue)")
    to_stdout = args.out is None
    progress = _BarProgress() if sys.stderr.isatty() else _PlainProgress()
    progress.echo = to_stdout
    t0 = time.perf_counter()
    try:
        with _dask_client(args) as client:
            rows = evaluate_files(run, args.inputs or None, templates=templates, out=args.out, shard=args.shard,
                                  resume=args.resume, mapping=mapping, outputs=outputs, check_finite=args.check_finite,
                                  progress=progress, client=client, graph_path=args.graph_path)
    except KeyboardInterrupt:
        hint = f"; rerun with --resume to finish {args.out}" if args.out else ""
        print(f"lossgraph: interrupted{hint}", file=sys.stderr)
        return 130
    header = run_header(run, outputs or run.outputs)
    summary = summarize(rows, header, convention=args.convention)
    wall = time.perf_counter() - t0
    stream = sys.stderr if to_stdout else sys.stdout
    if args.report:
        from lossgraph.export.report import write_report

        write_report(args.report, rows, header, summary, worst=args.worst)
    if args.json:
        print(_dump({**summary, "provider": run.provider, "wall_seconds": wall, "out": args.out}), file=stream)
        return 1 if summary["failed"] else 0
    print_summary(summary, stream)
    where = f" -> {args.out}" if args.out else ""
    print(f"provider {run.provider}; this run {wall:.1f} s{where}", file=stream)
    if args.report:
        print(f"report: {os.path.join(args.report, 'report.md')}", file=stream)
    return 1 if summary["failed"] else 0


def cmd_summarize(args: argparse.Namespace) -> int:
    """The summary of one or more results files (shards of one run), as if one run wrote them all."""
    from lossgraph.export import read_results_file, summarize

    header: dict[str, Any] = {}
    rows: dict[str, dict[str, Any]] = {}
    for path in args.results:
        h, part = read_results_file(path)
        if h.get("aggregation") and header.get("aggregation") and h["aggregation"] != header["aggregation"]:
            raise UserError(f"{path} holds other outputs or rules ({h['aggregation']}) than the files before it "
                            f"({header['aggregation']})")
        if h.get("aggregation") and not header.get("aggregation"):
            header = h  # a file written before results headers existed takes the rules of the others
        for r in part:
            rows[r["key"]] = r  # a sample in several files (a resumed shard) counts once: the last row
    summary = summarize(rows.values(), header, convention=args.convention)
    if args.report:
        from lossgraph.export.report import write_report

        write_report(args.report, list(rows.values()), header, summary, worst=args.worst)
    if args.json:
        print(_dump({**summary, "files": args.results}))
    else:
        print_summary(summary, sys.stdout)
    return 1 if summary["failed"] else 0


def cmd_check(args: argparse.Namespace) -> int:
    from lossgraph.export.runtimes import parse_runtimes

    from . import parity

    if args.all == bool(args.names):
        raise UserError("check takes loss names or --all")
    names = catalog.names() if args.all else args.names
    for n in names:
        catalog.get(n)
    runtimes = parse_runtimes(args.runtime)
    jobs = _jobs(args.jobs) if args.all or args.jobs is not None else 1  # a few graphs: workers would cost more than they save
    cache = parity.GraphCache(args.keep)
    t0 = time.perf_counter()

    def progress(rows: list) -> None:
        bad = sum(not r.ok for r in rows)
        head = f"{rows[0].name} {json.dumps(rows[0].params)}"
        print(f"  {head}: {len(rows) - bad}/{len(rows)} ok", file=sys.stderr, flush=True)

    rows = parity.check(names, cache=cache, with_grad=not args.no_grad, providers=args.provider, progress=progress,
                        runtimes=runtimes, jobs=jobs)
    print(parity.format_table(rows))
    print(f"exports: {len(cache.seconds)} graphs in {sum(cache.seconds.values()):.1f} s ({jobs} process(es)); "
          f"total {time.perf_counter() - t0:.1f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump([r.__dict__ for r in rows], f, indent=1)
    if args.matrix:
        from . import matrix

        matrix.write(rows, args.matrix)
    return 0 if all(r.ok for r in rows) else 1


def _jobs(value: int | None) -> int:
    """``--jobs``: the number given, or one per CPU core this process may use."""
    if value is None:
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if value < 1:
        raise UserError(f"--jobs must be >= 1; got {value}")
    return value


def cmd_bench(args: argparse.Namespace) -> int:
    from . import bench

    if args.all == bool(args.names):
        raise UserError("bench takes loss names or --all")
    names = catalog.names() if args.all else args.names
    for n in names:
        catalog.get(n)
    backends = args.backends.split(",") if args.backends else bench.BACKENDS
    kwargs = dict(provider=args.provider, repeat=args.repeat, threads=args.threads, mode=args.mode, backends=backends,
                  malloc=args.malloc)
    if args.graphs:
        from .parity import GraphCache

        kwargs["graphs"] = GraphCache(args.graphs, reuse=True)
    results = bench.bench(
        names, parse_dims(args.shape), parse_params(args.param),
        progress=lambda r: print(bench.summary(r), flush=True), **kwargs
    )
    print(bench.format_table(results))
    if args.out:
        paths = bench.write_results(results, args.out)
        print(f"wrote {', '.join(paths.values())}")
    return 0


def describe_model(path: str) -> dict[str, Any]:
    """Inputs (with dynamic dim names), outputs, opset, metadata and op histogram of a graph."""
    import onnx

    try:
        model = onnx.load(path)
    except FileNotFoundError:
        raise UserError(f"no such file: {path}") from None
    except Exception as e:  # protobuf DecodeError and friends
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"{path} is not a readable ONNX model: {why}") from None
    if not model.graph.node and not model.graph.input:
        raise UserError(f"{path} is not a readable ONNX model: empty graph")

    def shape(vi: Any) -> list[Any]:
        return [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]

    def dtype(vi: Any) -> str:
        return onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type).name

    ops = collections.Counter(n.op_type for n in model.graph.node)
    for f in model.functions:
        ops.update(n.op_type for n in f.node)
    return {
        "inputs": [{"name": i.name, "dtype": dtype(i), "shape": shape(i)} for i in model.graph.input],
        "outputs": [{"name": o.name, "dtype": dtype(o), "shape": shape(o)} for o in model.graph.output],
        "opset": {o.domain or "ai.onnx": o.version for o in model.opset_import},
        "metadata": {p.key: p.value for p in model.metadata_props},
        "ops": dict(ops.most_common()),
        "nodes": len(model.graph.node),
    }


def cmd_inspect(args: argparse.Namespace) -> int:
    info = describe_model(args.model)
    if args.cuda:
        return _inspect_cuda(args)
    if args.json:
        print(json.dumps(info))
        return 0
    print(f"{args.model}: {info['nodes']} nodes, opset {info['opset']}")
    for kind in ("inputs", "outputs"):
        print(f"{kind}:")
        for v in info[kind]:
            print(f"  {v['name']:<16} {v['dtype']:<8} ({', '.join(map(str, v['shape']))})")
    print("metadata:")
    for k, v in info["metadata"].items():
        print(f"  {k}: {v}")
    print("ops: " + ", ".join(f"{k}×{n}" for k, n in info["ops"].items()))
    return 0


def _inspect_cuda(args: argparse.Namespace) -> int:
    """``inspect --cuda``: the nodes onnxruntime's CUDA provider has no kernel for (exit 1 if any)."""
    from lossgraph.export.cuda_audit import audit_file, format_audit, kernel_table

    table = kernel_table(args.kernels) if args.kernels else kernel_table()
    audit = audit_file(args.model, table)
    if args.json:
        fallbacks = [{"name": n.name, "op": n.op, "domain": n.domain or "ai.onnx", "since": n.since, "inputs": n.inputs,
                      "outputs": n.outputs, "reason": n.reason} for n in audit.fallbacks]
        print(json.dumps({"model": args.model, "onnxruntime": table.version, "nodes": len(audit.nodes),
                          "op_types": len(audit.ops), "fallbacks": fallbacks}))
    else:
        print(f"{args.model}: {format_audit(audit, table)}")
    return 1 if audit.fallbacks else 0


def _summary_options(s: argparse.ArgumentParser) -> None:
    s.add_argument("--report", metavar="DIR", help="write DIR/report.md with PNG charts (per-class IoU, histograms, worst files)")
    s.add_argument("--worst", type=int, default=10, metavar="K", help="files listed as worst in the report (default 10)")
    s.add_argument("--convention", default="absent", choices=["absent", "mmseg", "torchmetrics"],
                   help="per-class value of a class absent from ground truth and prediction: None, NaN, 0 (means skip it)")


def build_parser() -> argparse.ArgumentParser:
    from ._version import __version__

    # the module docstring's first line, without its RST markup (help is plain text)
    p = argparse.ArgumentParser(prog="lossgraph", description=__doc__.splitlines()[0].replace("``", ""))
    p.add_argument("--version", action="version", version=f"lossgraph {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("list", help="list the catalog")
    s.add_argument("-v", "--verbose", action="store_true", help="also show default parameters")
    s.set_defaults(func=cmd_list)

    s = sub.add_parser("export", help="export a catalog loss to ONNX, or every entry into a bundle (--all)")
    s.add_argument("name", nargs="?")
    s.add_argument("--all", action="store_true", help="every catalog entry into the directory -o (graphs, test data, manifest.json)")
    s.add_argument("--jobs", type=int, default=None, metavar="N", help="with --all: export in N processes (default: one per core)")
    s.add_argument("-o", "--output", required=True, help="the .onnx file, or with --all the bundle directory")
    s.add_argument("--param", action="append", default=[], metavar="K=V", help="loss parameter (JSON value)")
    s.add_argument("--opset", type=int, default=None)
    s.add_argument("--dims", help="export-time sizes, e.g. B=2,C=3,H=5,W=7 (the graph stays dynamic)")
    s.add_argument("--with-grad", action="store_true", help="also output grad_<input> for differentiable inputs")
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("eval", help="run an exported graph on saved inputs (.npz files, or --input templates)")
    s.add_argument("model")
    s.add_argument("inputs", nargs="*", help=".npz file(s), directories (recursive) or glob patterns")
    s.add_argument("--input", action="append", default=[], metavar="NAME=TEMPLATE",
                   help="graph input NAME from files named by TEMPLATE with {stem} (e.g. labels='gt/{stem}.png'); "
                        ".npy, .npz[:array], .png, .tif")
    s.add_argument("--out", "-o", help="results file, .jsonl or .csv (one row per file, written as it goes)")
    s.add_argument("--provider", default="auto", choices=["auto", "cpu", "cuda"])
    s.add_argument("--shard", metavar="I/N", help="evaluate only shard I of N (1-based; split by a hash of each key)")
    s.add_argument("--resume", action="store_true", help="skip the samples already in --out, append the rest")
    s.add_argument("--check-finite", action="store_true", help="NaN/inf in an input or output fails the file")
    s.add_argument("--map", action="append", default=[], metavar="INPUT=ARRAY",
                   help="read graph input INPUT from the array named ARRAY in the files")
    s.add_argument("--outputs", metavar="NAMES", help="comma-separated outputs to compute (default: all)")
    _summary_options(s)
    s.add_argument("--json", action="store_true", help="one file: the row as JSON; many: the summary as JSON")
    s.add_argument("--workers", type=int, metavar="N", help="evaluate on a Dask LocalCluster of N worker processes")
    s.add_argument("--scheduler", metavar="ADDR",
                   help="evaluate on an existing Dask cluster: tcp://HOST:PORT or a scheduler file")
    s.add_argument("--graph-path", action="store_true",
                   help="Dask workers open the model's path (shared storage) instead of receiving its bytes")
    s.set_defaults(func=cmd_eval)

    s = sub.add_parser("summarize", help="the summary of results files (shards of one run merged exactly)")
    s.add_argument("results", nargs="+", help=".jsonl / .csv results files")
    _summary_options(s)
    s.add_argument("--json", action="store_true", help="print the summary as JSON")
    s.set_defaults(func=cmd_summarize)

    s = sub.add_parser("check", help="three-way parity: torch vs ONNX (onnxruntime) vs reference")
    s.add_argument("names", nargs="*")
    s.add_argument("--all", action="store_true")
    s.add_argument("--no-grad", action="store_true", help="skip the gradient graphs")
    s.add_argument("--provider", default="cpu", choices=["auto", "cpu", "cuda"])
    s.add_argument("--keep", metavar="DIR", help="write the exported graphs to DIR")
    s.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    s.add_argument("--runtime", default="onnxruntime", metavar="NAME[,NAME]",
                   help="where to run the graphs: onnxruntime (default), openvino, onnx-reference, tract")
    s.add_argument("--jobs", type=int, default=None, metavar="N", help="export in N processes (default: one per core with --all, else 1)")
    s.add_argument("--matrix", metavar="FILE",
                   help="write the runtime compatibility matrix into FILE's marked block (README.md), '-': print it")
    s.set_defaults(func=cmd_check)

    s = sub.add_parser("bench", help="time torch eager, onnxruntime, the Numba reference, the source loop code and "
                                     "the peers (kornia, MONAI, torch, torchmetrics)")
    s.add_argument("names", nargs="*")
    s.add_argument("--all", action="store_true")
    s.add_argument("--shape", help="sizes instead of each entry's bench_dims, e.g. B=8,C=21,H=256,W=256")
    s.add_argument("--param", action="append", default=[], metavar="K=V", help="loss parameter (JSON value)")
    s.add_argument("--provider", default="cpu", choices=["auto", "cpu", "cuda"],
                   help="cuda: torch on the GPU and onnxruntime's CUDA provider (error where CUDA is absent)")
    s.add_argument("--repeat", type=int, default=5, help="timed rounds after one warm-up (default 5)")
    s.add_argument("--threads", type=int, default=None, help="intra-op threads for torch, onnxruntime, Numba")
    s.add_argument("--mode", default="train", choices=["train", "forward"],
                   help="train (default): forward + backward where the loss is differentiable (gradient graphs); "
                        "forward: the value only")
    s.add_argument("--backends", help="comma-separated subset of torch,onnx,reference,source,peers")
    s.add_argument("--malloc", default="default", choices=["default", "reuse"],
                   help="reuse: keep freed memory for reuse (glibc), as tcmalloc/jemalloc do (default: as it comes)")
    s.add_argument("--out", default="results/bench", help="folder for results.md/.json/.png ('' to skip)")
    s.add_argument("--graphs", metavar="DIR", help="take the graphs already exported in DIR (lossgraph.parity.GraphCache "
                   "names), export the missing ones there")
    s.set_defaults(func=cmd_bench)

    s = sub.add_parser("inspect", help="show an ONNX graph's inputs, outputs, opset, metadata, ops")
    s.add_argument("model")
    s.add_argument("--json", action="store_true")
    s.add_argument("--cuda", action="store_true",
                   help="list the nodes onnxruntime's CUDA provider has no kernel for (they would run on the CPU); "
                        "exit 1 if any")
    s.add_argument("--kernels", metavar="TABLE", help="with --cuda: a kernel table other than the vendored one "
                   "(benchmarks/cuda/kernel_table.py writes them)")
    s.set_defaults(func=cmd_inspect)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from lossgraph._checks import InputError, InputTypeError
    from lossgraph.export.results import ResultsError
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (UserError, InputError, InputTypeError, ResultsError) as e:  # user mistakes; other errors are bugs
        print(f"lossgraph: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the environment: permissions, disk full, a folder that cannot be made
        where = f"{e.filename}: " if e.filename else ""
        print(f"lossgraph: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

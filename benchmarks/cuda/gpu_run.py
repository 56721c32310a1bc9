"""One-shot run of the catalog on onnxruntime's CUDA provider, prepared here, run on a GPU machine.

The GPU machine (see README.md beside this file) reaches no package registry, has torch 2.11 and a
plain onnxruntime without CUDA, and takes at most 64 MiB of files per command. So:

``prepare`` (here, with network and lossgraph's own torch) exports every graph the run needs into
``.cudarun/graphs`` and splits the onnxruntime-gpu wheel into parts of at most 60 MiB;
``receive PART`` (one device call per part, one right after the other) copies a part to the machine's
``/tmp``; ``device`` (the last call) joins and checks the wheel, installs it with ``pip --target``,
then, in one process:

1. environment: versions, the GPU, the providers onnxruntime offers;
2. kernels: the live CUDA kernel registry against the vendored table (``export/cuda_kernels.json``);
3. placement: every graph in a profiled session; the provider that ran each node, beside the offline
   audit (``lossgraph inspect --cuda``);
4. parity: every catalog case at its run shapes, torch on the GPU and the graphs on the CUDA provider,
   against the float64 reference (the table of ``lossgraph check``); the reference's Numba kernels
   are compiled beforehand in parallel processes, while steps 1-3 run;
5. bench: ``lossgraph bench --provider cuda --backends torch,onnx`` over the catalog, forward and
   ``--mode train`` (ratios onnx/torch), on the carried graphs.

``device --provider cpu`` is the dry run of steps 1-5 on a machine without a GPU (tests/test_cuda_run.py).
Each step writes into ``--out``; a step that fails is recorded and the next one runs.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PART_MIB = 60
STAGE = "/tmp/cudarun"  # on the device: parts, the joined wheel, the install
PROVIDERS = {"cuda": "CUDAExecutionProvider", "cpu": "CPUExecutionProvider"}


# --- prepare (here) ----------------------------------------------------------------------------------


def graph_keys(names: Sequence[str]) -> list[tuple[str, dict, dict, bool]]:
    """Every graph the device run opens: each case (value, gradient) and each bench graph (value, gradient)."""
    from lossgraph import catalog

    keys = []
    for name in names:
        spec = catalog.get(name)
        for case in spec.cases:
            keys += [(name, spec.resolve(case.params), dict(case.export_dims), g) for g in (False, True)]
        keys += [(name, spec.resolve({}), dict(spec.export_dims), g) for g in (False, True)]
    return keys


def export_graphs(names: Sequence[str], directory: str) -> list[str]:
    """Export (or reuse) the graphs of :func:`graph_keys` into ``directory``; returns their paths."""
    from lossgraph import catalog
    from lossgraph.parity import GraphCache

    cache = GraphCache(directory, reuse=True)
    paths = []
    for name, params, dims, grad in graph_keys(names):
        path = cache.get(catalog.get(name), params, dims, grad)
        if path not in paths:
            paths.append(path)
    return paths


def graph_paths(names: Sequence[str], directory: str) -> list[str]:
    """The files :func:`export_graphs` wrote for ``names``; raise if one is missing (the device must not export)."""
    from lossgraph import catalog
    from lossgraph.parity import case_key

    paths = []
    for name, params, dims, grad in graph_keys(names):
        spec = catalog.get(name)
        path = os.path.join(directory, case_key(spec, params, dims, grad and bool(spec.grad_inputs(params))) + ".onnx")
        if path not in paths:
            paths.append(path)
    missing = [os.path.basename(p) for p in paths if not os.path.isfile(p)]
    if missing:
        raise RuntimeError(f"graphs not carried (run prepare again): {', '.join(missing[:10])}"
                           + (f" and {len(missing) - 10} more" if len(missing) > 10 else ""))
    return paths


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def split(path: str, folder: str, part_mib: int = PART_MIB) -> list[str]:
    """Cut ``path`` into ``folder/part-00``, ``part-01``, ... of at most ``part_mib`` MiB."""
    os.makedirs(folder, exist_ok=True)
    for old in os.listdir(folder):
        os.remove(os.path.join(folder, old))
    parts = []
    with open(path, "rb") as f:
        for k, block in enumerate(iter(lambda: f.read(part_mib << 20), b"")):
            parts.append(os.path.join(folder, f"part-{k:02d}"))
            with open(parts[-1], "wb") as out:
                out.write(block)
    return parts


def prepare(args: argparse.Namespace) -> int:
    import torch

    import lossgraph
    from lossgraph import catalog

    names = args.names or catalog.names()
    t0 = time.perf_counter()
    folder = os.path.join(args.dir, "graphs")
    if not args.reuse and os.path.isdir(folder):
        shutil.rmtree(folder)  # graphs of older code must not travel
    graphs = export_graphs(names, folder)
    size = sum(os.path.getsize(p) for p in graphs)
    print(f"prepare: {len(graphs)} graphs in {args.dir}/graphs ({size / 2**20:.1f} MiB, {time.perf_counter() - t0:.0f} s)")
    manifest: dict[str, Any] = {"names": list(names), "graphs": len(graphs), "lossgraph": lossgraph.__version__,
                                "exported_with_torch": torch.__version__, "wheel": None, "parts": []}
    if args.wheel:
        parts = split(args.wheel, os.path.join(args.dir, "wheel"), args.part_mib)
        manifest.update(wheel=os.path.basename(args.wheel), sha256=sha256(args.wheel),
                        parts=[os.path.relpath(p, args.dir) for p in parts])
        print(f"prepare: {os.path.basename(args.wheel)} in {len(parts)} parts of <= {args.part_mib} MiB")
    with open(os.path.join(args.dir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    rel = os.path.relpath(args.dir, ROOT)
    print("device calls, one right after the other (README.md):")
    for part in manifest["parts"][:-1]:
        print(f"  run carry=[{rel}/{part}] command: python3 benchmarks/cuda/gpu_run.py receive {rel}/{part}")
    last = [f"{rel}/{manifest['parts'][-1]}"] if manifest["parts"] else []
    print(f"  run carry={[*last, f'{rel}/graphs', f'{rel}/manifest.json']} command: "
          f"python3 benchmarks/cuda/gpu_run.py device --dir {rel} --out $OUT" + (f" --receive {last[0]}" if last else ""))
    return 0


# --- on the device -----------------------------------------------------------------------------------


def receive(part: str, stage: str = STAGE) -> str:
    """Copy one wheel part into ``stage`` (the machine's /tmp stays while it is warm)."""
    os.makedirs(stage, exist_ok=True)
    dest = os.path.join(stage, os.path.basename(part))
    shutil.copyfile(part, dest)
    return dest


def join(manifest: dict[str, Any], stage: str = STAGE) -> str:
    """Join the received parts into the wheel; raise if one is missing or the sha256 differs."""
    missing = [p for p in manifest["parts"] if not os.path.isfile(os.path.join(stage, os.path.basename(p)))]
    if missing:
        raise RuntimeError(f"wheel parts not received: {', '.join(missing)} (the machine went back between calls?)")
    wheel = os.path.join(stage, manifest["wheel"])
    with open(wheel, "wb") as out:
        for p in manifest["parts"]:
            with open(os.path.join(stage, os.path.basename(p)), "rb") as f:
                shutil.copyfileobj(f, out)
    if sha256(wheel) != manifest["sha256"]:
        raise RuntimeError(f"{wheel}: sha256 differs from the manifest's")
    return wheel


def install(wheel: str, target: str) -> None:
    """``pip install --target`` of the joined wheel, offline (its dependencies are on the machine)."""
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--upgrade", "--target", target]
    subprocess.run([*pip, "--no-compile", wheel], check=True)
    subprocess.run([*pip, "--no-build-isolation", ROOT], check=True)


def nvidia_lib_dirs() -> list[str]:
    """Folders of the CUDA libraries pip installed beside torch (cuBLAS, cuDNN, cuFFT, cuRAND, ...)."""
    import site

    dirs = set()
    for sp in site.getsitepackages():
        for base, _, files in os.walk(os.path.join(sp, "nvidia")):
            if any(".so" in f for f in files):
                dirs.add(base)
    return sorted(dirs)


class Report:
    """Markdown sections and a JSON record, written to ``--out`` after every step."""

    def __init__(self, out: str, budget_s: float) -> None:
        self.out, self.t0, self.budget_s = out, time.perf_counter(), budget_s
        self.md: list[str] = []
        self.data: dict[str, Any] = {}
        os.makedirs(out, exist_ok=True)

    def left(self) -> float:
        return self.budget_s - (time.perf_counter() - self.t0)

    def step(self, title: str, fn: Callable[[], tuple[str, Any]]) -> Any:
        t0 = time.perf_counter()
        print(f"== {title} ({self.left():.0f} s left)", flush=True)
        try:
            text, data = fn()
        except Exception as e:  # noqa: BLE001 - a failed step is reported, the next one runs
            text, data = f"FAILED: {type(e).__name__}: {e}\n\n```\n{traceback.format_exc()[-3000:]}\n```", {"error": str(e)}
        seconds = time.perf_counter() - t0
        print(text if len(text) < 20000 else text[:20000] + "\n...", flush=True)
        self.md += [f"## {title} ({seconds:.0f} s)", "", text, ""]
        self.data[title] = data
        with open(os.path.join(self.out, "report.md"), "w") as f:
            f.write("\n".join(self.md))
        with open(os.path.join(self.out, "results.json"), "w") as f:
            json.dump(self.data, f, indent=1, default=str)
        return data


@contextlib.contextmanager
def captured_stderr() -> Iterator[list[str]]:
    """onnxruntime logs go to file descriptor 2: catch them at that level."""
    lines: list[str] = []
    with tempfile.TemporaryFile(mode="w+") as tmp:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            lines.extend(tmp.read().splitlines())


def step_environment(provider: str) -> tuple[str, Any]:
    import onnxruntime as ort
    import torch

    import lossgraph

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    env = {"python": platform.python_version(), "torch": torch.__version__, "torch_cuda": torch.version.cuda, "gpu": gpu,
           "onnxruntime": ort.__version__, "onnxruntime_file": ort.__file__, "providers": ort.get_available_providers(),
           "lossgraph": lossgraph.__version__, "lossgraph_file": lossgraph.__file__, "cpus": os.cpu_count(), "provider": provider}
    if provider == "cuda":
        if "CUDAExecutionProvider" not in env["providers"] or gpu is None:
            raise RuntimeError(f"no CUDA here: {env}")
        env["cuda_session"] = cuda_session_check()
    return "\n".join(f"- {k}: {v}" for k, v in env.items()), env


def cuda_session_check() -> str:
    """A one-node graph in a CUDA session: onnxruntime falls back to the CPU, with only a log line,
    when the provider library cannot load (missing cuDNN, cuBLAS, ...); that must stop the run."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    graph = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"])], "add", [x],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    onnx.checker.check_model(model)
    with captured_stderr() as log:
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
        y = sess.run(None, {"x": np.array([1.0, 2.0], dtype=np.float32)})[0]
    if sess.get_providers()[0] != "CUDAExecutionProvider" or y.tolist() != [2.0, 4.0]:
        raise RuntimeError(f"the CUDA provider did not load: {sess.get_providers()}; " + " | ".join(log[-5:]))
    return "ok (Add on CUDAExecutionProvider)"


def step_kernels(provider: str) -> tuple[str, Any]:
    if provider != "cuda":
        return "skipped: the live registry needs the CUDA provider (kernel_table.py --stub reads it here)", {"skipped": True}
    from lossgraph.export.cuda_audit import TABLE

    r = subprocess.run([sys.executable, os.path.join(HERE, "kernel_table.py"), "--compare", TABLE],
                       check=False, capture_output=True, text=True)
    return f"```\n{r.stdout}{r.stderr[-2000:]}```\nidentical: {r.returncode == 0}", {"identical": r.returncode == 0, "out": r.stdout}


def placement(path: str, provider: str) -> dict[str, Any]:
    """Run ``path`` once in a profiled session; which provider ran each node, and onnxruntime's log lines
    about CPU placement."""
    import onnxruntime as ort
    from lossgraph.export import OnnxLoss

    from lossgraph import catalog

    run = OnnxLoss(path, providers="cpu")  # metadata and the inputs the graph takes
    spec = catalog.get(run.loss_name)
    inputs = spec.example_inputs(spec.export_dims, seed=0, params=spec.resolve(run.params))
    so = ort.SessionOptions()
    so.enable_profiling = True
    so.profile_file_prefix = os.path.join(tempfile.gettempdir(), "lossgraph-placement")
    so.log_severity_level = 1  # INFO: "CUDA kernel not found in registries ..." and the CPU placements
    with captured_stderr() as log:
        run = OnnxLoss(path, providers=provider, sess_options=so)
        run.session.run(None, run.feeds(**inputs))
        profile = run.session.end_profiling()
    with open(profile) as f:
        events = json.load(f)
    os.remove(profile)
    nodes: dict[str, tuple[str, str]] = {}
    for e in events:
        args = e.get("args", {})
        if e.get("cat") == "Node" and "provider" in args:
            nodes[e["name"].rsplit("_kernel_time", 1)[0]] = (args.get("op_name", "?"), args["provider"])
    want = PROVIDERS[provider]
    other = sorted({f"{op} ({p.replace('ExecutionProvider', '')})" for op, p in nodes.values() if p != want})
    notes = [line.split("] ", 1)[-1] for line in log if "kernel not found" in line or "fallback" in line.lower()]
    return {"session_provider": run.provider, "nodes": len(nodes), "elsewhere": sum(p != want for _, p in nodes.values()),
            "elsewhere_ops": other, "log": notes[:20]}


def step_placement(paths: Sequence[str], provider: str) -> tuple[str, Any]:
    from lossgraph.export.cuda_audit import audit_file

    rows, lines = {}, ["| graph | nodes run | on another provider | ops there | audit: fallbacks |", "|---|---|---|---|---|"]
    for path in paths:
        key = os.path.basename(path)[: -len(".onnx")]
        try:
            r = placement(path, provider)
        except Exception as e:  # noqa: BLE001 - reported in the table
            r = {"error": f"{type(e).__name__}: {e}"}
        r["audit_fallbacks"] = len(audit_file(path).fallbacks)
        rows[key] = r
        lines.append(f"| {key} | {r.get('nodes', '-')} | {r.get('elsewhere', r.get('error'))} | "
                     f"{', '.join(r.get('elsewhere_ops', []))} | {r['audit_fallbacks']} |")
        lines += [f"|  | log: {n} | | | |" for n in r.get("log", [])]
    want = PROVIDERS[provider]
    wrong = [k for k, r in rows.items() if r.get("session_provider", want) != want or "error" in r]
    lines.append(f"\n{len(rows)} graphs; sessions not on the asked provider or failed: {wrong or 'none'}; "
                 f"nodes on another provider in {sum(bool(r.get('elsewhere')) for r in rows.values())} graphs "
                 "(small int64 shape computations are placed on the CPU on purpose)")
    return "\n".join(lines), rows


def warm_reference(name: str) -> float:
    """Compile (or load) the Numba kernels of ``name``'s reference on tiny inputs; seconds taken."""
    from lossgraph import catalog, parity as testing

    t0 = time.perf_counter()
    spec = catalog.get(name)
    for case in spec.cases:
        params = spec.resolve(case.params)
        testing.reference_eval(spec, spec.example_inputs(case.export_dims, seed=0, params=params), params)
    return time.perf_counter() - t0


def start_warmup(names: Sequence[str]) -> Any:
    """Numba compiles each reference once (cache=True writes it beside the installed sources): done in
    parallel worker processes while the GPU steps run, the parity step then loads the kernels from disk."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(max_workers=max(1, min(len(names), (os.cpu_count() or 2) - 1)),
                               mp_context=multiprocessing.get_context("spawn"))
    return pool, {n: pool.submit(warm_reference, n) for n in names}


def finish_warmup(warmup: Any) -> tuple[str, Any]:
    pool, futures = warmup
    t0 = time.perf_counter()
    seconds = {n: f.result() for n, f in futures.items()}
    pool.shutdown()
    slow = sorted(seconds.items(), key=lambda kv: -kv[1])[:5]
    return (f"waited {time.perf_counter() - t0:.0f} s more; slowest: " + ", ".join(f"{n} {t:.0f} s" for n, t in slow),
            seconds)


def step_parity(names: Sequence[str], cache: Any, provider: str, report: Report) -> tuple[str, Any]:
    from lossgraph import catalog, parity as testing

    device = "cuda" if provider == "cuda" else "cpu"
    rows = []
    for name in names:
        spec = catalog.get(name)
        for case in spec.cases:
            try:
                rows += testing.check_case(spec, case, cache, providers=provider, device=device)
            except Exception as e:  # noqa: BLE001 - a FAIL row, the next case runs
                row = testing.Row(name, dict(case.params), {}, dict(case.export_dims), ok=False)
                row.failures.append(f"{type(e).__name__}: {str(e)[:300]}")
                rows.append(row)
        if report.left() < 0:
            rows.append(testing.Row("(time budget)", {}, {}, None, ok=False, failures=["out of time: later entries not run"]))
            break
    return f"torch on {device}, graphs on onnxruntime {provider}\n\n```\n{testing.format_table(rows)}\n```", \
        [r.__dict__ for r in rows]


def step_bench(names: Sequence[str], graphs: str, provider: str, grad: bool, out: str, repeat: int,
               shape: str | None) -> tuple[str, Any]:
    folder = os.path.join(out, "bench-grad" if grad else "bench")
    cmd = [sys.executable, "-m", "lossgraph.cli", "bench", *names, "--provider", provider, "--backends", "torch,onnx",
           "--graphs", graphs, "--repeat", str(repeat), "--out", folder, "--mode", "train" if grad else "forward"]
    cmd += ["--shape", shape] if shape else []
    # run outside the source tree: from its root, `-m` would import the uninstalled lossgraph/ folder
    r = subprocess.run(cmd, check=False, capture_output=True, text=True, cwd=out)
    if r.returncode:
        raise RuntimeError(f"{' '.join(cmd)} exited {r.returncode}: {r.stderr[-3000:]}")
    table = r.stdout[r.stdout.find("| "):] if "| " in r.stdout else r.stdout
    return f"`lossgraph bench {' '.join(cmd[4:])}`\n\n{table}", {"stdout": r.stdout}


def device(args: argparse.Namespace) -> int:
    args.dir, args.out, args.stage = map(os.path.abspath, (args.dir, args.out, args.stage))
    manifest_path = os.path.join(args.dir, "manifest.json")
    with open(manifest_path) as f:
        manifest = json.load(f)
    if args.receive:
        receive(args.receive, args.stage)
    if not os.environ.get("LOSSGRAPH_CUDARUN_CHILD"):  # first pass: the wheel, then the run in a fresh process
        env = dict(os.environ, LOSSGRAPH_CUDARUN_CHILD="1")
        wheel = join(manifest, args.stage) if manifest["wheel"] else None
        print(f"wheel: {wheel} (sha256 as in the manifest)" if wheel else "wheel: none in the manifest", flush=True)
        if wheel and not args.no_install:
            site_dir = os.path.join(args.stage, "site")
            t0 = time.perf_counter()
            install(wheel, site_dir)
            print(f"installed onnxruntime-gpu and lossgraph into {site_dir} ({time.perf_counter() - t0:.0f} s)", flush=True)
            env["PYTHONPATH"] = site_dir + os.pathsep + env.get("PYTHONPATH", "")
        libs = nvidia_lib_dirs()
        env["LD_LIBRARY_PATH"] = os.pathsep.join([*libs, env.get("LD_LIBRARY_PATH", "")])
        argv = [a for a in sys.argv[1:] if a != "--receive" and a != args.receive]
        return subprocess.run([sys.executable, os.path.abspath(__file__), *argv], env=env, check=False).returncode

    from lossgraph.parity import GraphCache

    names = args.names or manifest["names"]
    warmup = start_warmup(names)  # before torch touches CUDA: the workers are fresh processes anyway
    report = Report(args.out, args.budget_s)
    report.md += [f"# lossgraph on onnxruntime {args.provider}: {len(names)} catalog entries", ""]
    env = report.step("environment", lambda: step_environment(args.provider))
    if "error" in env:
        return 1
    graphs = os.path.join(args.dir, "graphs")
    cache = GraphCache(graphs, reuse=True)
    paths = graph_paths(names, graphs)  # all present after prepare: nothing is exported here
    report.step("kernel registry", lambda: step_kernels(args.provider))
    report.step("placement", lambda: step_placement(paths, args.provider))
    report.step("reference JIT", lambda: finish_warmup(warmup))
    report.step("parity", lambda: step_parity(names, cache, args.provider, report))
    for grad in (False, True):
        if report.left() > 0 and not args.no_bench:
            report.step(f"bench --mode {'train' if grad else 'forward'}",
                        lambda g=grad: step_bench(names, graphs, args.provider, g, args.out, args.repeat, args.bench_shape))
    ok = all("error" not in v for v in report.data.values() if isinstance(v, dict))
    print(f"wrote {args.out}/report.md, results.json; {time.perf_counter() - report.t0:.0f} s; {'ok' if ok else 'with failures'}")
    return 0 if ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("prepare", help="here: export the graphs, split the wheel")
    s.add_argument("--wheel", help="the onnxruntime-gpu wheel (pip download ..., README.md)")
    s.add_argument("--dir", default=os.path.join(ROOT, ".cudarun"))
    s.add_argument("--part-mib", type=int, default=PART_MIB)
    s.add_argument("--names", nargs="*", help="catalog entries (default: all)")
    s.add_argument("--reuse", action="store_true", help="keep the graphs already in DIR/graphs (same code only)")
    s = sub.add_parser("receive", help="device: keep one wheel part in /tmp/cudarun")
    s.add_argument("part")
    s.add_argument("--stage", default=STAGE)
    s = sub.add_parser("device", help="device: join, install, run the checks (--provider cpu: the dry run)")
    s.add_argument("--dir", default=os.path.join(ROOT, ".cudarun"))
    s.add_argument("--out", required=True)
    s.add_argument("--receive", help="a last wheel part carried with this call")
    s.add_argument("--stage", default=STAGE)
    s.add_argument("--provider", default="cuda", choices=["cuda", "cpu"])
    s.add_argument("--names", nargs="*", help="catalog entries (default: the manifest's)")
    s.add_argument("--no-install", action="store_true", help="use the onnxruntime already importable")
    s.add_argument("--budget-s", type=float, default=420.0, help="later steps are skipped past this many seconds")
    s.add_argument("--repeat", type=int, default=5, help="bench: timed rounds")
    s.add_argument("--no-bench", action="store_true", help="skip the bench steps")
    s.add_argument("--bench-shape", help="bench: sizes instead of each entry's bench_dims (the dry run's small ones)")
    args = p.parse_args(argv)
    if args.command == "prepare":
        return prepare(args)
    if args.command == "receive":
        print(f"received {receive(args.part, args.stage)} ({os.path.getsize(args.part) / 2**20:.1f} MiB)")
        return 0
    return device(args)


if __name__ == "__main__":
    sys.exit(main())

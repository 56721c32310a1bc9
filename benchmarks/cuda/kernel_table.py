"""Write (or compare) the CUDA kernel table that ``lossgraph inspect --cuda`` audits graphs against.

The table is onnxruntime's own kernel registry (``get_all_opkernel_def()``) restricted to the CUDA
provider. On a GPU machine the installed onnxruntime-gpu loads its CUDA provider and the registry
is read directly. On a machine without CUDA libraries (``--stub``) this script compiles empty stand-in
libraries (every CUDA, cuBLAS, cuDNN, TensorRT function the provider libraries import, returning 0)
and reads the registry in a subprocess that loads the real provider library against them: building
the registry runs no CUDA code, so the table is that of the real build.

    python benchmarks/cuda/kernel_table.py --stub -o export/cuda_kernels.json   # regenerate (needs gcc, nm)
    python benchmarks/cuda/kernel_table.py --compare export/cuda_kernels.json  # GPU machine: live vs vendored
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

SOURCE = ("onnxruntime.capi._pybind_state.get_all_opkernel_def() of the installed onnxruntime-gpu {version} "
          "(PyPI manylinux x86_64 wheel), CUDAExecutionProvider entries; {how}")


def provider_libraries() -> list[str]:
    import onnxruntime

    capi = os.path.join(os.path.dirname(onnxruntime.__file__), "capi")
    return [os.path.join(capi, f) for f in sorted(os.listdir(capi)) if re.match(r"libonnxruntime_providers_(cuda|tensorrt)\.so$", f)]


def build_stubs(folder: str) -> None:
    """Stand-in shared libraries for every library the provider libraries need and this machine lacks."""
    versioned: dict[str, set[str]] = {}
    plain: set[str] = set()
    needed: set[str] = set()
    for lib in provider_libraries():
        dyn = subprocess.run(["readelf", "-d", lib], capture_output=True, text=True, check=True).stdout
        needed |= set(re.findall(r"NEEDED.*\[(.+)\]", dyn))
        syms = subprocess.run(["nm", "-D", "--undefined-only", lib], capture_output=True, text=True, check=True).stdout
        for line in syms.split():
            name, _, version = line.partition("@")
            if not re.match(r"^(cu|nv|create|get|__cuda)", name) or version.startswith(("GLIBC", "CXXABI", "GCC")):
                continue
            (versioned.setdefault(version, set()).add(name) if version else plain.add(name))
    system = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, check=True).stdout
    missing = sorted(n for n in needed if n.startswith(("libcu", "libnv")) and n not in system)
    for soname in set(missing) | set(versioned):
        names = sorted(versioned.get(soname, set()) | (plain if soname in ("libcuda.so.1", "libnvinfer.so.10") else set()))
        c = os.path.join(folder, soname + ".c")
        with open(c, "w") as f:
            f.writelines(f"long {n}(void) {{ return 0; }}\n" for n in names)
        cmd = ["gcc", "-w", "-shared", "-fPIC", "-o", os.path.join(folder, soname), c, f"-Wl,-soname,{soname}"]
        if soname in versioned:
            vmap = os.path.join(folder, soname + ".map")
            with open(vmap, "w") as f:
                f.write(f"{soname} {{ global: {' '.join(n + ';' for n in names)} }};\n")
            cmd.append(f"-Wl,--version-script={vmap}")
        subprocess.run(cmd, check=True)


def live_table() -> tuple[str, list]:
    import onnxruntime
    from lossgraph.export.cuda_audit import registered_kernels

    return onnxruntime.__version__, registered_kernels()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-o", "--output", help="write the table here")
    p.add_argument("--stub", action="store_true", help="no CUDA here: read the registry against stub libraries")
    p.add_argument("--compare", metavar="TABLE", help="compare the live registry with TABLE; exit 1 if they differ")
    p.add_argument("--dump", metavar="JSON", help=argparse.SUPPRESS)  # the subprocess of --stub
    args = p.parse_args(argv)
    if args.dump:
        version, rows = live_table()
        with open(args.dump, "w") as f:
            json.dump({"version": version, "rows": rows}, f)
        return 0
    if args.stub:
        with tempfile.TemporaryDirectory() as tmp:
            build_stubs(tmp)
            dump = os.path.join(tmp, "rows.json")
            env = {**os.environ, "LD_LIBRARY_PATH": tmp + os.pathsep + os.environ.get("LD_LIBRARY_PATH", "")}
            subprocess.run([sys.executable, __file__, "--dump", dump], env=env, check=True, stderr=subprocess.DEVNULL)
            with open(dump) as f:
                data = json.load(f)
        version, rows = data["version"], data["rows"]
        how = "read on a machine without CUDA, the provider library loaded against stub CUDA libraries (benchmarks/cuda/kernel_table.py --stub)"
    else:
        version, rows = live_table()
        how = "read with the CUDA provider loaded (benchmarks/cuda/kernel_table.py)"
    if not rows:
        print("kernel_table: no CUDA kernels registered (the CUDA provider did not load)", file=sys.stderr)
        return 1
    print(f"onnxruntime {version}: {len(rows)} CUDA kernels")
    if args.output:
        from lossgraph.export.cuda_audit import write_table

        write_table(rows, args.output, version, SOURCE.format(version=version, how=how))
        print(f"wrote {args.output}")
    if args.compare:
        with open(args.compare) as f:
            vendored = json.load(f)
        live = {json.dumps(r) for r in rows}
        old = {json.dumps(r) for r in vendored["kernels"]}
        print(f"compare with {args.compare} (onnxruntime {vendored['onnxruntime']}): "
              f"{len(live & old)} same, {len(live - old)} only live, {len(old - live)} only vendored")
        for r in sorted(live ^ old)[:20]:
            print(("  live     " if r in live else "  vendored ") + r)
        return 0 if live == old and version == vendored["onnxruntime"] else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

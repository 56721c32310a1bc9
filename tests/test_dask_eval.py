"""Evaluation on Dask: real worker processes on 127.0.0.1 (a LocalCluster, and a `dask scheduler` with
two `dask worker` processes started here), against the in-process run; a killed worker, a file that
kills its worker, a killed client resumed."""

from __future__ import annotations

import io
import json
import logging
import math
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import warnings
import zlib

import dask
import distributed
import numpy as np
import pytest

import lossgraph as lg
from lossgraph import reference as ref
from lossgraph.export import distributed as dd
from lossgraph.export import evaluate_files, read_results
from lossgraph.export.evaluate import Progress

pytestmark = pytest.mark.xdist_group("sigmoid_focal")  # shares the parity tests' exported graph

SPEC = lg.catalog.get("sigmoid_focal")
PARAMS = SPEC.resolve(SPEC.cases[0].params)
#: a worker's memory limit: a few times what a worker holds here (about 150 MB), far below the poison file
WORKER_MEMORY = "600MiB"


@pytest.fixture(scope="module")
def focal(graphs):
    return graphs.get(SPEC, PARAMS, SPEC.cases[0].export_dims, False)


def _dataset(root, n, seed=0):
    """n small files (odd shapes) and one unreadable file, under ``root`` (a subfolder too)."""
    rng = np.random.default_rng(seed)
    os.makedirs(root / "sub", exist_ok=True)
    for i in range(n):
        dims = {"B": 1 + i % 2, "C": 1 + i % 4, "H": 2 + i % 5, "W": 3 + i % 3}
        np.savez(root / ("sub" if i % 3 == 0 else "") / f"f{i:03d}.npz", **SPEC.make_inputs(dims, rng, PARAMS))
    (root / "f_bad.npz").write_bytes(b"not a zip archive")
    return root


def write_poison(path, gib=1):
    """An ``.npz`` whose ``logits`` array declares (1, 1, N, 1024) float32 = ``gib`` GiB of zeros, held
    in a ~1 MB deflate stream (a decompression bomb, built without compressing a GiB: a block of zeros
    after a full flush always deflates to the same bytes). Reading it fills ``gib`` GiB of memory."""
    n = gib * 2**30 // (4 * 1024)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (1, 1, n, 1024)})
    head, block, repeats = header.getvalue(), bytes(2**22), gib * 2**30 // 2**22
    z = zlib.compressobj(1, zlib.DEFLATED, -15)
    first = z.compress(head) + z.flush(zlib.Z_FULL_FLUSH)
    body = z.compress(block) + z.flush(zlib.Z_FULL_FLUSH)
    data = first + body * repeats + z.flush(zlib.Z_FINISH)
    crc = zlib.crc32(head)
    for _ in range(repeats):
        crc = zlib.crc32(block, crc)
    size = len(head) + len(block) * repeats
    targets = io.BytesIO()
    np.save(targets, np.zeros((1, 1, 4, 4), np.float32))
    members = [(b"logits.npy", 8, crc, data, size), (b"targets.npy", 0, zlib.crc32(targets.getvalue()), targets.getvalue(),
                                                      len(targets.getvalue()))]
    with open(path, "wb") as f:
        central = b""
        for name, method, c, payload, usize in members:
            offset = f.tell()
            f.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0x21, c, len(payload), usize, len(name), 0))
            f.write(name + payload)
            central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 0x21, c, len(payload), usize,
                                   len(name), 0, 0, 0, 0, 0, offset) + name
        start = f.tell()
        f.write(central + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 2, 2, len(central), start, 0))


def _same(rows):
    """The rows without their timings, in their order, as JSON gives them back."""
    return json.loads(json.dumps([{k: v for k, v in r.items() if k != "seconds"} for r in rows]))


def _by_file(rows):
    return {r["file"]: r for r in _same(rows)}


def _check_values(rows):
    for r in rows:
        if r["error"] is None:
            with np.load(r["file"]) as d:
                expected = ref.sigmoid_focal(d["logits"].astype(np.float64), d["targets"], **PARAMS)
            np.testing.assert_allclose(r["outputs"]["loss"], expected, rtol=SPEC.rtol, atol=SPEC.atol)


@pytest.fixture(scope="module")
def cluster():
    """A LocalCluster of 2 worker processes (1 thread each, a memory limit), whose scheduler lets a
    task kill 2 workers (allowed-failures 1) before it gives up on it."""
    # allowed-failures is read when the scheduler starts; its HTTP server moves off a busy port 8787
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Port .* is already in use", category=UserWarning)
        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
            memory_limit=WORKER_MEMORY)
    with cluster:
        yield cluster


@pytest.fixture()
def client(cluster, monkeypatch):
    """A client of the LocalCluster; every sample counts as slow enough for it (the first two run in
    this process while the run decides, the rest on the workers)."""
    monkeypatch.setattr(dd, "LOCAL_BUSY", math.inf)
    with distributed.Client(cluster) as c:
        c.wait_for_workers(2, timeout=60)
        yield c


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory):
    """A `dask scheduler` and two `dask worker` processes (nanny, 1 thread each) on 127.0.0.1, started
    from another directory than the tests'; yields the scheduler address, stops them afterwards."""
    where = tmp_path_factory.mktemp("dask")
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "dask"]
    procs = [subprocess.Popen([*cmd, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard",
                               "--scheduler-file", str(where / "scheduler.json")], cwd=where,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        for _ in range(2):
            procs.append(subprocess.Popen([*cmd, "worker", address, "--host", "127.0.0.1", "--nthreads", "1",
                                           "--no-dashboard", "--memory-limit", WORKER_MEMORY], cwd=where,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        with distributed.Client(address, timeout=60) as c:
            c.wait_for_workers(2, timeout=60)
        yield address, str(where / "scheduler.json")
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def test_local_cluster_rows_equal_in_process(focal, client, tmp_path):
    data = _dataset(tmp_path / "data", 30)
    here = evaluate_files(focal, data, out=tmp_path / "a.jsonl", providers="cpu")
    there = evaluate_files(focal, data, out=tmp_path / "b.jsonl", providers="cpu", client=client)
    assert _same(there) == _same(here)  # the returned rows are in file order, as in-process
    written = read_results(tmp_path / "b.jsonl")
    assert sorted(r["file"] for r in written) == sorted(r["file"] for r in here)  # each file once
    assert _by_file(written) == _by_file(here)
    assert _by_file(here)[str(data / "f_bad.npz")]["error"].startswith("not a readable .npz file")
    _check_values(there)


def test_graph_from_path_and_worker_sessions(focal, client, tmp_path):
    """``graph_path=True``: workers open the path; each worker process holds one session per graph
    with intra-op threads = cores // worker threads on the host."""
    data = _dataset(tmp_path / "data", 8)
    here = evaluate_files(focal, data, providers="cpu")
    assert _same(evaluate_files(focal, data, providers="cpu", client=client, graph_path=True)) == _same(here)

    def sessions():
        opts = [r.session.get_session_options().intra_op_num_threads for r in dd._SESSIONS.values()]
        return os.getpid(), len(dd._SESSIONS), opts

    info = client.run(sessions)
    cores = client.run(dd._cores)
    for addr, (pid, count, threads) in info.items():
        assert pid != os.getpid() and count <= 1  # this graph once (bytes and path share the sha)
        assert all(t == max(1, cores[addr] // 2) for t in threads)
    assert sum(count for _, count, _ in info.values()) >= 1


def test_killed_worker_loses_nothing(focal, client, tmp_path):
    data = _dataset(tmp_path / "data", 60)
    here = evaluate_files(focal, data, providers="cpu")
    pids = client.run(os.getpid)
    victim = min(pids.values())

    class KillOnFirstRow(Progress):
        seen = 0

        def update(self, row):
            self.seen += 1
            if self.seen == 3:  # the first row from a worker (two came from the probe), chunks in flight
                os.kill(victim, signal.SIGKILL)

    out = tmp_path / "r.jsonl"
    there = evaluate_files(focal, data, out=out, providers="cpu", client=client, progress=KillOnFirstRow())
    assert _same(there) == _same(here)
    written = read_results(out)
    assert len(written) == len(here) and _by_file(written) == _by_file(here)  # no row twice, none lost
    client.wait_for_workers(2, timeout=60)
    assert victim not in client.run(os.getpid).values()  # the nanny started a new process


def test_poison_file_becomes_failed_row(focal, client, tmp_path):
    data = _dataset(tmp_path / "data", 12)
    here = evaluate_files(focal, data, providers="cpu")
    poison = data / "f005_poison.npz"
    write_poison(poison)
    pids = set(client.run(os.getpid).values())
    out = tmp_path / "r.jsonl"
    rows = evaluate_files(focal, data, out=out, providers="cpu", client=client)
    by = _by_file(rows)
    assert by[str(poison)]["outputs"] is None and "worker process died 2 times" in by[str(poison)]["error"]
    assert by[str(poison)].keys() == by[str(data / "f001.npz")].keys()  # a row like the others
    assert {f: v for f, v in by.items() if f != str(poison)} == _by_file(here)
    assert sorted(r["file"] for r in read_results(out)) == sorted(by)
    client.wait_for_workers(2, timeout=60)
    assert pids != set(client.run(os.getpid).values())  # the poison file really killed worker processes


def test_small_samples_stay_in_process(focal, client, tmp_path, monkeypatch):
    """On a LocalCluster, a run whose first samples keep LOCAL_BUSY of the cores busy stays in the client process."""
    monkeypatch.setattr(dd, "LOCAL_BUSY", 0.0)
    monkeypatch.setattr(dd, "PROBE_SECONDS", 0.0)  # decide after PROBE + 1 samples (10 small files would all be probed)
    data = _dataset(tmp_path / "data", 10)
    here = evaluate_files(focal, data, providers="cpu")
    said = logging.Handler()
    said.emit = lambda record: said.lines.append(record.getMessage())
    said.lines = []
    logging.getLogger(dd.__name__).addHandler(said)
    try:
        with distributed.get_task_stream(client) as tasks:
            there = evaluate_files(focal, data, providers="cpu", client=client)
    finally:
        logging.getLogger(dd.__name__).removeHandler(said)
    assert _same(there) == _same(here)
    assert not tasks.data  # no task ran on the cluster
    assert len(said.lines) == 1 and "0% or more is where a local Dask cluster does not pay off" in said.lines[0]


def test_scheduler_and_workers_cli(focal, scheduler, tmp_path, monkeypatch):
    from lossgraph.cli import main

    address, scheduler_file = scheduler
    monkeypatch.chdir(tmp_path)
    _dataset(tmp_path / "data", 20)  # relative paths: the workers run in another directory
    here = evaluate_files(focal, "data", providers="cpu")
    assert main(["eval", focal, "data", "--out", "a.jsonl", "--scheduler", address, "--provider", "cpu"]) == 1  # f_bad
    assert main(["eval", focal, "data", "--out", "b.csv", "--scheduler", scheduler_file, "--provider", "cpu"]) == 1
    for name in ("a.jsonl", "b.csv"):
        written = read_results(name)
        assert len(written) == len(here) and _by_file(written) == _by_file(here)
    _check_values(here)


def test_cli_workers_local_cluster(focal, tmp_path, monkeypatch, capsys):
    from lossgraph.cli import main

    monkeypatch.setattr(dd, "LOCAL_BUSY", math.inf)  # tiny files: through the workers all the same
    data = _dataset(tmp_path / "data", 12)
    here = evaluate_files(focal, data, providers="cpu")
    out = tmp_path / "r.jsonl"
    assert main(["eval", focal, str(data), "--out", str(out), "--workers", "2", "--provider", "cpu", "--json"]) == 1
    summary = json.loads(capsys.readouterr().out)
    assert summary["count"] == 13 and summary["failed"] == 1
    assert _by_file(read_results(out)) == _by_file(here)
    assert main(["eval", focal, str(data), "--workers", "2", "--scheduler", "tcp://127.0.0.1:1"]) == 2
    assert "give one of them" in capsys.readouterr().err
    monkeypatch.setattr(dd, "CONNECT_SECONDS", 2)
    assert main(["eval", focal, str(data), "--scheduler", f"tcp://127.0.0.1:{_free_port()}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lossgraph: error: cannot reach the Dask scheduler tcp://127.0.0.1:") and err.count("\n") == 1


def test_resume_after_killing_the_client(focal, scheduler, tmp_path):
    address, _ = scheduler
    data = _dataset(tmp_path / "data", 300)
    out = tmp_path / "r.jsonl"
    cmd = [sys.executable, "-c", "import sys; from lossgraph.cli import main; sys.exit(main())", "eval", focal, str(data), "--out", str(out), "--scheduler", address,
           "--provider", "cpu"]
    client = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and client.poll() is None:
            if out.exists() and out.read_bytes().count(b"\n") >= 6:  # the header line and 5 rows
                break
            time.sleep(0.01)
        client.send_signal(signal.SIGKILL)
    finally:
        client.wait()
    first = read_results(out)
    assert 5 <= len(first) < 301, len(first)  # killed mid-run
    done = subprocess.run([*cmd, "--resume"], check=False, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr  # f_bad fails
    written = read_results(out)
    here = evaluate_files(focal, data, providers="cpu")
    assert len(written) == len(here) and _by_file(written) == _by_file(here)
    assert f"{301 - len(first)} files to evaluate" in done.stderr  # exactly the rest


def test_import_is_torch_free():
    code = "import sys, lossgraph.export.distributed; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)

"""Scale-out of the streaming sweep (#16): the same sweep at 0, 1 and 2 Dask workers.

The estate is ``bench/estate_scale.py``'s (test-driver hosts of 100 VMs; 1,000 hosts =
100,000 VMs in ``--full``, 40 quick), swept into the same scratch PostgreSQL database,
emptied before each sweep. Rows, side by side in one run:
- ``in the master``: ``StreamingSweep`` reading and judging every host itself (what
  ``vmwarden scan`` does without ``--scheduler``);
- ``on N workers``: the same sweep with its hosts read and judged by N ``vmwarden worker``
  processes (``distributed/host_tasks.py``; a lab scheduler on loopback, ``--insecure``,
  ``--slots 1`` each), the master writing each host's VMs, images and findings as they come.

The database is this bench's own (``vmw_s_bench``): ``estate-scale`` empties its own when it
starts. Each sweep runs in a fresh process (``--child``) so its peak RSS is the master's own; the
scheduler and workers are started before it and are not timed. The findings must be the same
on every row (a row says so). This machine has 2 cores, shared by the master, PostgreSQL,
the scheduler and the workers: a second worker can only help as far as a core is idle, so
the rows also give the master's and each worker's CPU seconds during the sweep.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import stop_processes
from bench.estate_scale import PER_HOST, POLICY, REPO, _reset, estate, pg_url

VENV_BIN = Path(sys.executable).parent
DB = "vmw_s_bench"
#: Where the generated VMs' disks are named (fleetgen): the workers may read there, as the
#: master may, so both sides find the same (missing) files.
IMAGE_DIR = "/var/lib/libvirt/images"


def child(hosts: int, url: str, address: str, workers: int) -> dict[str, Any]:
    """One timed sweep (in its own process): in the master when ``workers`` is 0."""
    from vmwarden.engine.stream import StreamingSweep
    from vmwarden.policy import parse_policy
    from vmwarden.store import Store

    uris = estate(hosts)
    _reset(url)
    store = Store.open(url)
    executor = hosts_on = None
    if workers:
        from vmwarden.distributed.executor import DaskDisks
        from vmwarden.distributed.host_tasks import DaskHosts
        from vmwarden.distributed.security import cluster_security

        executor = DaskDisks(address, cluster_security(address, None, insecure=True))
        deadline = time.monotonic() + 120
        while len(executor.workers()) < workers:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{workers} workers did not join")
            time.sleep(0.2)
        hosts_on = DaskHosts(executor, store)
    w0 = executor.client.run(_own_cpu) if executor is not None else {}
    t0 = time.perf_counter()
    c0 = resource.getrusage(resource.RUSAGE_SELF)
    r = StreamingSweep(store, parse_policy(POLICY), hosts=hosts_on).run(uris, total=len(uris))
    seconds = time.perf_counter() - t0
    c1 = resource.getrusage(resource.RUSAGE_SELF)
    w1 = executor.client.run(_own_cpu) if executor is not None else {}
    out = {
        "seconds": seconds,
        "cpu": (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime),
        "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        **r.counts(),
        "by_worker": sorted(hosts_on.by_worker.values()) if hosts_on else [],
        "fallback": len(hosts_on.warnings) if hosts_on else 0,
        "worker_cpu": [round(w1[a] - w0[a], 1) for a in sorted(w0) if a in w1],
    }
    if executor is not None:
        executor.close()
    store.close()
    return out


def _own_cpu() -> float:
    """CPU seconds of the process it runs in (sent to each worker: the sweep's share)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _cluster(state: Path, workers: int) -> tuple[str, list[subprocess.Popen[bytes]]]:
    """A lab scheduler and ``workers`` vmwarden workers (one slot each), all niced."""
    info = state / f"scheduler-{workers}.json"
    log = (state / "cluster.log").open("ab")
    procs = [
        subprocess.Popen(
            [
                *("nice", str(VENV_BIN / "dask"), "scheduler", "--host", "127.0.0.1"),
                *("--port", "0", "--no-dashboard", "--scheduler-file", str(info)),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    ]
    deadline = time.monotonic() + 60
    while not info.exists():
        if time.monotonic() > deadline or procs[0].poll() is not None:
            raise RuntimeError(f"no scheduler; see {state / 'cluster.log'}")
        time.sleep(0.2)
    address = json.loads(info.read_text())["address"]
    storage = IMAGE_DIR if os.path.isdir(IMAGE_DIR) else str(state)
    for i in range(workers):
        cmd = ["nice", str(VENV_BIN / "vmwarden"), "worker", "--scheduler", address]
        cmd += ["--host", f"bench-w{i}", "--storage", storage, "--slots", "1", "--insecure"]
        procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT))
    return address, procs


def _sweep(hosts: int, url: str, workers: int, state: Path) -> dict[str, Any]:
    address, procs = _cluster(state, workers) if workers else ("", [])
    try:
        args = [str(hosts), url, address or "-", str(workers)]
        proc = subprocess.run(
            [sys.executable, "-m", "bench.estate_workers", "--child", *args],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
            check=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
        return out
    finally:
        stop_processes(procs)


def _row(name: str, r: dict[str, Any], vms: int, base: dict[str, Any] | None) -> dict[str, Any]:
    per_s = vms / r["seconds"]
    note = [f"{per_s:,.0f} VMs/s ({per_s / 2:,.0f} per core, 2 cores)"]
    note.append(f"master CPU {r['cpu']:.0f} s")
    if r["worker_cpu"]:
        note.append(f"workers' CPU {' + '.join(f'{c:.0f}' for c in r['worker_cpu'])} s")
        note.append(f"hosts per worker {r['by_worker']}")
    if r["fallback"]:
        note.append(f"{r['fallback']} host(s) fell back to the master")
    if base is not None:
        note.append(f"{base['seconds'] / r['seconds']:.2f}x the speed {base['label']}")
        same = (r["findings"], r["vms"]) == (base["findings"], base["vms"])
        note.append("same findings count" if same else "DIFFERENT findings count")
    return {
        "name": name,
        "min": r["seconds"],
        "median": r["seconds"],
        "max": r["seconds"],
        "n": 1,
        "us_per_vm": r["seconds"] / max(vms, 1) * 1e6,
        "peak_rss": r["peak_rss"],
        "findings": r["findings"],
        "note": "; ".join(note),
    }


def run(full: bool) -> list[dict[str, Any]]:
    hosts = 1000 if full else 40
    vms = hosts * PER_HOST
    url = pg_url(DB)  # its own: estate-scale empties vmw_e_bench when it starts
    if url is None:
        return [{"name": "estate workers", "note": "not measured: no PostgreSQL"}]
    estate(hosts)  # written once, cached, outside the timings
    label = f"{hosts:,}-host sweep ({vms:,} VMs into PostgreSQL)"
    rows: list[dict[str, Any]] = []
    runs: dict[int, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="vmw-s-bench-") as tmp:
        for workers in (0, 1, 2):
            runs[workers] = r = _sweep(hosts, url, workers, Path(tmp))
            where = {0: "in the master", 1: "on 1 Dask worker"}.get(
                workers, f"on {workers} Dask workers"
            )
            r["label"] = where
            base = None if workers == 0 else runs[0] if workers == 1 else runs[1]
            rows.append(_row(f"{label} {where}", r, vms, base))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)  # a long run's progress
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", nargs=4, metavar="ARG")
    ap.add_argument("--full", action="store_true")
    args = ap.parse_args()
    if args.child:
        hosts, url, address, workers = args.child
        print(json.dumps(child(int(hosts), url, address, int(workers))))
        return
    for row in run(args.full):
        print(json.dumps(row))


if __name__ == "__main__":
    main()

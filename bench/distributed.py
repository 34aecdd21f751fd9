"""Scale-out (#16): inspection throughput per worker, the host's own reads against remote reads
of the same images, in one run.

A second libvirtd (``scripts/second-libvirtd.sh``: its own namespaces, TCP on 127.0.0.1)
holds N hard links of the Debian 12 image in its dir pool and N shut-off domains on them
(nothing else: no orphan volumes, which a worker reads and the connection path does not).
The same sweep (``engine.scan.Sweep``, one inspector process on each side) reads them:
- through the connection (``vol.download``, ranged), as without a scheduler;
- on that host's ``vmwarden worker`` (a lab Dask cluster on loopback, ``--insecure``; the
  worker in a mount namespace that sees the pool as that host does, ``--slots 1``), which
  reads the files locally and sends back only the results.
Then each side sweeps again with nothing changed (warm: the store's caches on the connection
side, the worker's memory of unchanged layers on the other).
Each repeat defines fresh domains on fresh links (new paths), so both sides start cold in the
same way (one store per side, whose caches the new paths miss): chain, root sha256 (187 MB)
and inspection of every disk; the worker's inspector stays warm across sweeps (the design:
dissect is imported once per worker, not once per sweep). The floor is a
warm ``InspectorPool`` on the local file, no sweep. ``images_per_minute`` = N / sweep wall.
The machine's 2 cores are shared by the master, the worker and libvirtd.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import REPO, stop_processes
from bench.inspection import IMAGE

SCRIPT = REPO / "scripts" / "second-libvirtd.sh"
HOST = "vmw-d-bench-hv"
POOL_DIR = "/var/lib/libvirt/images"
DISKS = 3
VENV_BIN = Path(sys.executable).parent


def _domain(name: str, vm_id: str, disk: str) -> str:
    return f"""<domain type='qemu'><name>{name}</name><uuid>{vm_id}</uuid>
<memory unit='MiB'>64</memory><os><type arch='x86_64'>hvm</type></os>
<devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
<source file='{disk}'/><target dev='vda' bus='virtio'/></disk></devices></domain>"""


def _row(name: str, walls: list[float], images: int) -> dict[str, Any]:
    med = statistics.median(walls)
    return {
        "name": name,
        "min": min(walls),
        "median": med,
        "max": max(walls),
        "n": len(walls),
        "images_per_minute": images * 60 / med,
    }


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(repeats: int = 3) -> list[dict[str, Any]]:
    if not IMAGE.exists():
        return [{"name": "distributed inspection", "note": f"not measured: no {IMAGE}"}]
    if shutil.which("libvirtd") is None or os.geteuid() != 0:
        return [{"name": "distributed inspection", "note": "not measured: needs root, libvirtd"}]
    with tempfile.TemporaryDirectory(prefix="vmw-d-bench-", dir="/var/tmp") as tmp:
        state = Path(tmp)
        port = _port()
        subprocess.run(
            ["bash", str(SCRIPT), "start", str(state), str(port), str(uuid.uuid4()), HOST],
            check=True,
            capture_output=True,
            timeout=300,
        )
        procs: list[subprocess.Popen[bytes]] = []
        try:
            return _measure(state, f"qemu+tcp://127.0.0.1:{port}/system", repeats, procs)
        finally:
            stop_processes(procs)
            subprocess.run(["bash", str(SCRIPT), "stop", str(state)], check=False, timeout=60)


def _cluster(state: Path, procs: list[subprocess.Popen[bytes]]) -> str:
    """A lab scheduler and one worker of HOST that sees the pool where HOST's libvirtd does."""
    info = state / "scheduler.json"
    log = (state / "cluster.log").open("ab")
    procs.append(
        subprocess.Popen(
            [
                *(str(VENV_BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", "0"),
                *("--no-dashboard", "--scheduler-file", str(info)),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    )
    deadline = time.monotonic() + 60
    while not info.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"no scheduler; see {state / 'cluster.log'}")
        time.sleep(0.2)
    address = json.loads(info.read_text())["address"]
    script = f'mount --bind {state / "lib"} /var/lib/libvirt && exec "$@"'
    worker = [str(VENV_BIN / "vmwarden"), "worker", "--scheduler", address, "--host", HOST]
    worker += ["--storage", POOL_DIR, "--slots", "1", "--insecure"]
    procs.append(
        subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *worker],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    )
    return address


def _measure(
    state: Path, uri: str, repeats: int, procs: list[subprocess.Popen[bytes]]
) -> list[dict[str, Any]]:
    import libvirt

    from vmwarden.distributed.executor import DaskDisks
    from vmwarden.distributed.security import cluster_security
    from vmwarden.engine.inspection import InspectionOptions
    from vmwarden.engine.scan import Sweep, SweepOptions
    from vmwarden.inspect.sandbox import InspectorPool
    from vmwarden.policy import parse_policy
    from vmwarden.store import Store

    images = state / "lib" / "images"
    images.mkdir(parents=True, exist_ok=True)
    master = state / "lib" / "vmw-d-master.qcow2"  # same filesystem, outside the pool
    shutil.copy(IMAGE, master)
    conn = libvirt.open(uri)
    pool = conn.storagePoolDefineXML(
        f"<pool type='dir'><name>vmw-d-bench</name><target><path>{POOL_DIR}</path></target></pool>"
    )
    pool.create(0)
    address = _cluster(state, procs)
    executor = DaskDisks(address, cluster_security(address, None, insecure=True))
    deadline = time.monotonic() + 120
    while HOST not in executor.workers():
        if time.monotonic() > deadline:
            raise RuntimeError(f"the worker did not join; see {state / 'cluster.log'}")
        time.sleep(0.3)
    policy = parse_policy("version: 1\nrules: []\n")
    inspect = InspectionOptions(enabled=True, workers=1, timeout=300)
    walls: dict[str, list[float]] = {
        k: [] for k in ("worker", "connection", "worker-warm", "connection-warm")
    }
    reads: dict[str, set[str]] = {"worker": set(), "connection": set()}
    facts: dict[str, set[object]] = {"worker": set(), "connection": set()}
    try:
        for rep in range(repeats):
            for side in ("connection", "worker"):
                doms = []
                for i in range(DISKS):
                    link = images / f"vmw-d-{side}-{rep}-{i}.qcow2"
                    os.link(master, link)
                    xml = _domain(
                        f"vmw-d-{side}-{rep}-{i}", str(uuid.uuid4()), f"{POOL_DIR}/{link.name}"
                    )
                    doms.append(conn.defineXML(xml))
                pool.refresh(0)
                options = SweepOptions(inspect=inspect)
                if side == "worker":
                    options.executor = executor
                # one store per side: new paths miss its caches, its facts key stays the same
                with Store.open(f"sqlite:///{state / f'{side}.sqlite'}") as store:
                    t0 = time.perf_counter()
                    result = Sweep(store, policy, actor="bench", options=options).run([uri])
                    walls[side].append(time.perf_counter() - t0)
                    t0 = time.perf_counter()  # again, nothing changed: the warm sweep
                    Sweep(store, policy, actor="bench", options=options).run([uri])
                    walls[f"{side}-warm"].append(time.perf_counter() - t0)
                reads[side] |= set(result.disk_reads.values())
                facts[side] |= {
                    (vm.guest.os_name, len(vm.guest.packages)) if vm.guest else None
                    for vm in result.vms
                }
                for dom in doms:
                    dom.undefine()
                for link in images.glob("vmw-d-*.qcow2"):  # no orphans left for the next sweep
                    link.unlink()
        with InspectorPool(workers=1, fingerprint_key=b"k" * 32, timeout=300) as local_pool:
            local_pool.inspect(IMAGE)  # warm; untimed
            floor = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                local_pool.inspect(IMAGE)
                floor.append(time.perf_counter() - t0)
    finally:
        executor.close()
        conn.close()
    worker_row = _row(
        f"sweep of {DISKS} disks, read by the host's Dask worker", walls["worker"], DISKS
    )
    remote_row = _row(
        f"sweep of {DISKS} disks, read through vol.download", walls["connection"], DISKS
    )
    floor_row = _row("floor: warm inspector on the local file (inspection only)", floor, 1)
    for row, side in ((worker_row, "worker"), (remote_row, "connection")):
        row["ratio_to_floor"] = row["median"] / DISKS / floor_row["median"]
        same = facts["worker"] == facts["connection"] and None not in facts[side]
        row["note"] = (
            f"disk_reads={'/'.join(sorted(reads[side]))}; "
            f"{'same facts both sides' if same else '**facts differ or missing**'}; "
            "root sha256 + chain + inspection per disk, cold"
        )
    warm = [
        {
            **_row(f"the same sweep again, nothing changed, {how}", walls[f"{side}-warm"], DISKS),
            "note": note,
        }
        for side, how, note in (
            ("connection", "through vol.download", "the store's digest and facts caches"),
            ("worker", "by the host's Dask worker", "the worker's memory of unchanged layers"),
        )
    ]
    return [floor_row, remote_row, worker_row, *warm]

"""vSphere inventory (#13.2): vmwarden's sweep of a vcsim estate against one bare
PropertyCollector retrieval of the same properties, side by side in one run.

vcsim (``scripts/build-vcsim.sh``; needs Go and Debian's govmomi sources) serves an estate
of ``hosts`` standalone ESXi hosts with ``per_host`` VMs each (2,000 VMs on 50 hosts in both
modes: vcsim builds it in ~5 s; quick mode only repeats less). Rows, each over one logged-in
session (login is not in either side):

- ``floor``: ``RetrievePropertiesEx`` (continued by token) of the filter spec the sweep uses
  (``collect.filter_spec``: the same VM, host, portgroup, datastore properties), objects
  only: what any client must pay to learn the estate.
- ``vmwarden inventory``: ``VsphereConnector.inventory()``: that retrieval, the mapping to
  neutral records, the datastore browse (once per datastore), the power-off event query and
  the tags over the REST API.

``ratio_to_floor`` is inventory/floor on medians (target ≤ 1.5x at ≥ 2,000 VMs on ≥ 50
hosts; the note has it on mins, the least disturbed runs), ``us_per_vm`` each side's
median per VM.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from bench.common import REPO

HOSTS = 50
PER_HOST = 40
USER, PASSWORD = "vmw-v4-bench", "vmw-v4-bench-secret"


def _row(name: str, walls: list[float], vms: int, **extra: Any) -> dict[str, Any]:
    med = statistics.median(walls)
    return {
        "name": name,
        "min": min(walls),
        "median": med,
        "max": max(walls),
        "n": len(walls),
        "us_per_vm": med / vms * 1e6,
        **extra,
    }


def _vcsim(hosts: int, per_host: int) -> tuple[subprocess.Popen[str], str, int] | str:
    """A started vcsim (process, host, port), or why it cannot run here."""
    build = subprocess.run(
        ["bash", str(REPO / "scripts/build-vcsim.sh")], capture_output=True, text=True, check=False
    )
    if build.returncode != 0:
        return f"not measured: vcsim not built ({build.stderr.strip()[-200:]})"
    binary = build.stdout.strip().splitlines()[-1]
    proc = subprocess.Popen(
        [binary, "-port", "0", "-user", USER, "-pass", PASSWORD, "-cluster", "0",
         "-standalone-host", str(hosts), "-vm", str(per_host)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    url = urllib.parse.urlsplit(line)
    if not line.startswith("https://") or url.hostname is None or url.port is None:
        proc.kill()
        proc.wait()
        return f"not measured: vcsim did not start ({line!r})"
    return proc, url.hostname, url.port


def _timed(fn: Callable[[], int], repeats: int) -> tuple[list[float], int]:
    walls: list[float] = []
    count = 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        count = fn()
        walls.append(time.perf_counter() - t0)
    return walls, count


def run(repeats: int = 3, hosts: int = HOSTS, per_host: int = PER_HOST) -> list[dict[str, Any]]:
    from vmwarden.connectors.base import open_connector
    from vmwarden.connectors.vsphere.collect import filter_spec, objects, open_view

    started = _vcsim(hosts, per_host)
    if isinstance(started, str):
        return [{"name": "vSphere inventory", "note": started}]
    proc, host, port = started
    os.environ["VMWARDEN_VSPHERE_PASSWORD"] = PASSWORD
    try:
        with open_connector(f"vsphere://{USER}@{host}:{port}?insecure=1") as conn:
            si = conn._si  # the connector's own session: both sides share it

            def floor() -> int:
                view = open_view(si, None)
                try:
                    spec = filter_spec(view)
                    return sum(
                        1
                        for o in objects(si.content.propertyCollector, spec)
                        if type(o.obj).__name__.endswith("VirtualMachine")
                    )
                finally:
                    view.DestroyView()

            def inventory() -> int:
                return len(conn.inventory().vms)

            floor()  # warm both (vcsim's first answers, pyvmomi's type caches)
            inventory()
            floors: list[float] = []
            sweeps: list[float] = []
            vms = 0
            for _ in range(repeats):  # interleaved: noise hits both sides alike
                f, vms = _timed(floor, 1)
                s, n = _timed(inventory, 1)
                floors += f
                sweeps += s
                if n != vms:
                    raise RuntimeError(f"inventory saw {n} VMs, the floor {vms}")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    where = f"{vms:,} VMs on {hosts} hosts"
    fl = _row(f"floor: one PropertyCollector retrieval, {where}", floors, vms)
    inv = _row(
        f"vmwarden inventory, {where}",
        sweeps,
        vms,
        ratio_to_floor=statistics.median(sweeps) / statistics.median(floors),
        note=f"{min(sweeps) / min(floors):.2f}x on mins; + datastore browse, power-off "
        "events, tags (REST)",
    )
    return [fl, inv]


if __name__ == "__main__":
    for r in run():
        print(r)

"""Sweep: ``vmwarden scan`` (inventory + store + ~10 rules, no inspection) vs the floor.

``ratio_to_floor`` is the issue's figure. The test driver loads its whole fleet file when a
connection opens (``connect``: about 0.6 ms per VM, most of the floor; a real libvirtd
connects in milliseconds), so ``excl_connect`` gives the ratio with that load taken out of
both sides: what vmwarden costs beyond the minimal loop, as against a real hypervisor.

The floor is the least any tool must do: ``listAllDomains()`` + ``XMLDesc()`` + an lxml
parse of every domain, in one process. The naive script is what a user writes first:
``virsh list --all --name`` then ``virsh dumpxml`` per domain (1k only; it is slow).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

from bench.common import CACHE, Sample, repeat

POLICY = """\
version: 1
templates: [{name: base, digest: "sha256:%s"}]
zones:
  internal: {networks: [prod], classifications: [internal]}
  pci: {networks: [pci], classifications: [pci]}
  public: {networks: [dmz], classifications: [public]}
quarantine: {network: quarantine}
rules:
  - {name: unapproved, resource: vm, severity: high, filters: [not-approved-template]}
  - {name: unregistered, resource: vm, severity: medium, filters: [unregistered]}
  - {name: zone, resource: vm, severity: high, filters: [outside-zone]}
  - {name: mixed, resource: vm, severity: medium, filters: [mixed-classification-on-host]}
  - {name: dupmac, resource: vm, severity: medium, filters: [duplicate-mac]}
  - {name: dormant, resource: vm, severity: low, filters: [{type: dormant, days: 30}]}
  - {name: big, resource: vm, severity: low, filters: [{type: value, key: memory_kib, op: gt, value: 16777216}]}
  - {name: ownerless, resource: vm, severity: low, filters: [{type: value, key: meta.owner, op: eq, value: null}]}
  - {name: many-cpus, resource: vm, severity: info, filters: [{type: value, key: vcpus, op: ge, value: 16}]}
  - {name: not-pci-or-dmz, resource: vm, severity: info, filters: [{not: {type: value, key: meta.classification, op: in, value: [pci, public]}}]}
""" % ("0" * 64)


def fleet(n: int) -> Path:
    """A cached test-driver fleet of n VMs (one host file)."""
    d = CACHE / f"fleet-{n}"
    path = d / "fleet.xml"
    if not path.exists():
        from vmwarden.engine.fleetgen import write_generated_fleet

        d.mkdir(parents=True, exist_ok=True)
        (written,) = write_generated_fleet(d, n, seed=7)
        written.rename(path)
    return path


# The test driver parses its whole fleet file when the connection opens (~0.6 ms per VM):
# both the floor and the sweep pay it, so it is reported on its own ("connect").
FLOOR = """
import time
import libvirt
from lxml import etree
def run():
    t0 = time.perf_counter()
    conn = libvirt.open("test://{path}")
    connect = time.perf_counter() - t0
    n = 0
    for dom in conn.listAllDomains():
        etree.fromstring(dom.XMLDesc(0).encode()); n += 1
    conn.close()
    return {{"vms": n, "connect": connect}}
"""

# What ``vmwarden scan`` does without ``--inspect``-able disks, made explicit: no inspection.
SCAN = """
from vmwarden.engine.inspection import InspectionOptions
from vmwarden.engine.scan import Sweep, SweepOptions
from vmwarden.policy import parse_policy
from vmwarden.store import Store
POLICY = {policy!r}
db = "{db}"
def run():
    store = Store.open(db)
    options = SweepOptions(inspect=InspectionOptions(enabled=False))
    res = Sweep(store, parse_policy(POLICY), actor="bench", options=options).run(["test://{path}"])
    store.close()
    return {{"vms": len(res.vms), "findings": len(res.findings)}}
"""

# watch's reconcile: one long-lived connection inventoried again and again (parse cache).
RECONCILE = """
import time
from vmwarden.connectors.libvirt.connection import LibvirtConnector
def run():
    conn = LibvirtConnector("test://{path}")
    times = []
    for _ in range(3):
        t0 = time.perf_counter(); inv = conn.inventory(); times.append(time.perf_counter() - t0)
    conn.close()
    return {{"vms": len(inv.vms), "first": times[0], "third": times[2]}}
"""


def naive(path: Path, n: int, sample: int) -> float:
    """The virsh loop's time for all n domains, from a timed sample of ``sample`` of them.

    Each ``virsh`` call is a new process and a new connection (with the test driver also a
    re-read of the fleet file), so its cost per domain is flat: sampling keeps quick mode
    under its time budget. The list call is timed in full.
    """
    uri = f"test://{path}"
    t0 = time.perf_counter()
    names = subprocess.run(
        ["virsh", "-c", uri, "list", "--all", "--name"], capture_output=True, text=True, check=True
    ).stdout.split()
    listed = time.perf_counter() - t0
    t1 = time.perf_counter()
    for name in names[:sample]:
        subprocess.run(["virsh", "-c", uri, "dumpxml", name], capture_output=True, check=True)
    per_domain = (time.perf_counter() - t1) / min(sample, len(names))
    return listed + per_domain * n


def _row(s: Sample, n: int, f_med: float, c_med: float, *, connects: bool = True) -> dict[str, Any]:
    """Figures of one sample; ``excl_connect``: the ratio once the test driver's file load is
    taken out of both sides (``connects``: whether the sample's time includes it)."""
    d = s.to_dict()
    d["us_per_vm"] = d["median"] / n * 1e6
    d["ratio_to_floor"] = d["median"] / f_med
    d["excl_connect"] = (d["median"] - (c_med if connects else 0)) / max(f_med - c_med, 1e-9)
    d["vms"] = n
    return d


def run(sizes: list[int], repeats: int, tmp: Path, naive_sample: int = 100) -> list[dict[str, Any]]:
    rows = []
    for n in sizes:
        path = fleet(n)
        floor, connect = Sample(f"floor {n}"), Sample(f"connect {n} (in floor and scan)")
        for _ in range(repeats):
            r = repeat(floor.name, FLOOR.format(path=path), 1)
            floor.values += r.values
            floor.rss += r.rss
            connect.values.append(r.extra.pop("connect"))
            floor.extra.update(r.extra)
        cold = Sample(f"scan {n}")
        warm = Sample(f"rescan {n} (unchanged)")
        for i in range(repeats):
            db = tmp / f"sweep-{n}-{i}.db"
            code = SCAN.format(policy=POLICY, db=f"sqlite:///{db}", path=path)
            for sample in (cold, warm):  # first run populates, second is the unchanged re-scan
                r = repeat(sample.name, code, 1)
                sample.values += r.values
                sample.rss += r.rss
                sample.extra.update(r.extra)
        f_med, c_med = floor.stats()["median"], connect.stats()["median"]
        rows += [_row(s, n, f_med, c_med) for s in (floor, cold, warm)]
        rows.append(_row(connect, n, f_med, c_med, connects=False) | {"excl_connect": ""})
        r = repeat("reconcile", RECONCILE.format(path=path), 1).extra
        for label, key in (("1st", "first"), ("3rd", "third")):
            name = f"inventory {n}, long-lived connection (watch), {label} sweep"
            rows.append(_row(Sample(name, [r[key]]), n, f_med, c_med, connects=False))
        if n <= 1000:
            t = naive(path, n, naive_sample)
            name = f"virsh list + dumpxml loop {n} (from {naive_sample} sampled)"
            rows.append(
                {
                    "name": name,
                    "min": t,
                    "median": t,
                    "max": t,
                    "n": 1,
                    "us_per_vm": t / n * 1e6,
                    "ratio_to_floor": t / f_med,
                    "excl_connect": t / max(f_med - c_med, 1e-9),
                    "vms": n,
                }
            )
    return rows

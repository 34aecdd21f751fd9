"""Estate scale (#16.4): a streaming sweep of H hosts x 100 VMs into PostgreSQL.

Full: 10,000 test-driver hosts of 100 VMs (1,000,000 VMs); quick: 200 hosts (20,000 VMs).
Each sweep runs in a fresh process (``python -m bench.estate_scale --child``) so that its
peak RSS is the master's own, into a scratch PostgreSQL database emptied first (its own:
``vmw_e_bench`` beside the tests' ``vmwarden_test``, on ``scripts/start-postgres.sh``'s
cluster; ``VMWARDEN_BENCH_PG_URL`` names another). Rows, side by side:
- ``floor``: what any tool must do per VM here: open each host's test-driver file,
  ``listAllDomains`` + ``XMLDesc`` + an lxml parse (all hosts in quick mode, a sample of
  200 in full mode, per VM);
- ``stream``: ``StreamingSweep`` (the bench policy of ``bench/sweep.py`` plus the
  estate-wide ``duplicate-mac``): wall time, VMs per second (and per core: the machine has
  2 and PostgreSQL runs beside the master), the master's peak RSS, PostgreSQL's database
  size, findings, and a read-back (counts and one page of each dashboard list);
- quick mode also sweeps the same estate with the whole-estate ``Sweep`` (in memory), the
  path ``vmwarden scan`` took before streaming: its peak RSS is the figure streaming bounds.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PER_HOST = 100
ESTATES = Path(os.environ.get("VMWARDEN_ESTATE_CACHE", "/var/cache/vmwarden-test"))
REPO = Path(__file__).resolve().parent.parent
DB = "vmw_e_bench"
PORT = 54329

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
  - {name: ownerless, resource: vm, severity: low, filters: [{type: value, key: meta.owner, op: eq, value: null}]}
""" % ("0" * 64)


def estate(hosts: int) -> list[str]:
    from vmwarden.engine.estate_files import write_estate

    return write_estate(ESTATES / f"estate-{hosts}x{PER_HOST}", hosts, PER_HOST)


def pg_url(db: str = DB) -> str | None:
    """The bench's scratch database ``db``, created on the test cluster when missing."""
    if db == DB and (url := os.environ.get("VMWARDEN_BENCH_PG_URL")):
        return url
    try:
        subprocess.run(
            ["bash", str(REPO / "scripts" / "start-postgres.sh")],
            check=True,
            capture_output=True,
            timeout=120,
        )
        have = subprocess.run(
            ["su", "postgres", "-c", f"psql -p {PORT} -qtAc \"SELECT 1 FROM pg_database "
             f"WHERE datname='{db}'\""],
            check=True, capture_output=True, text=True,
        ).stdout.strip()  # fmt: skip
        if have != "1":
            me = subprocess.run(["id", "-un"], check=True, capture_output=True, text=True)
            me = me.stdout.strip()
            subprocess.run(
                [
                    "su",
                    "postgres",
                    "-c",
                    f"psql -p {PORT} -qc 'CREATE DATABASE {db} OWNER \"{me}\"'",
                ],
                check=True,
                capture_output=True,
            )
    except (OSError, subprocess.SubprocessError):
        return None
    return f"postgresql+psycopg:///{db}?host=/var/run/postgresql&port={PORT}"


# --- the measured process -----------------------------------------------------------------------


def _reset(url: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


def _readback(store: Any, last_host: str) -> dict[str, Any]:
    """Counts and one page of each dashboard list, timed (ms) on the loaded store."""
    from sqlalchemy import func, select, text

    from vmwarden.store.pages import FindingQuery, Pages, VmQuery
    from vmwarden.store.tables import findings, vms

    out: dict[str, Any] = {}
    with store._read() as conn:
        out["stored_vms"] = conn.execute(select(func.count()).select_from(vms)).scalar_one()
        out["open_findings"] = conn.execute(
            select(func.count()).select_from(findings).where(findings.c.status == "open")
        ).scalar_one()
        out["db_bytes"] = conn.execute(
            text("SELECT pg_database_size(current_database())")
        ).scalar_one()
    pages = Pages(store)
    for name, call in (
        ("vms_by_host", lambda: pages.vms(VmQuery(host=last_host), limit=50, offset=0)),
        ("vms_by_state", lambda: pages.vms(VmQuery(state="paused"), limit=50, offset=0)),
        (
            "findings_by_rule",
            lambda: pages.findings(FindingQuery(status="open", rule="dupmac"), limit=50, offset=0),
        ),
        (
            "findings_by_host",
            lambda: pages.findings(FindingQuery(status="open", host=last_host), limit=50, offset=0),
        ),
    ):
        t0 = time.perf_counter()
        _items, total = call()
        out[f"page_{name}_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        out[f"page_{name}_total"] = total
    return out


def child(mode: str, hosts: int, url: str | None, db_path: str | None) -> dict[str, Any]:
    from vmwarden.engine.estate_files import host_name
    from vmwarden.engine.inspection import InspectionOptions
    from vmwarden.engine.scan import Sweep, SweepOptions
    from vmwarden.engine.stream import StreamingSweep
    from vmwarden.policy import parse_policy
    from vmwarden.store import Store

    uris = estate(hosts)
    target = url or f"sqlite:///{db_path}"
    if url:
        _reset(url)
    store = Store.open(target)
    policy = parse_policy(POLICY)
    t0 = time.perf_counter()
    c0 = resource.getrusage(resource.RUSAGE_SELF)

    def progress(stage: str, done: int, total: int) -> None:
        if done % 500 == 0 or done == total:
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
            print(f"{stage} {done}/{total} {time.perf_counter() - t0:.0f}s peak {rss} MiB",
                  file=sys.stderr, flush=True)  # fmt: skip

    if mode == "stream":
        r = StreamingSweep(store, policy, progress=progress).run(uris, total=len(uris))
        counts = r.counts()
    else:
        options = SweepOptions(inspect=InspectionOptions(enabled=False), stream_hosts=10**9)
        res = Sweep(store, policy, actor="bench", options=options).run(uris)
        counts = {"vms": len(res.vms), "findings": len(res.findings)}
    seconds = time.perf_counter() - t0
    c1 = resource.getrusage(resource.RUSAGE_SELF)
    out = {
        "seconds": seconds,
        "cpu": (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime),
        "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        **counts,
    }
    if url:
        out.update(_readback(store, host_name(hosts - 1)))
    store.close()
    return out


def floor(hosts: int, sample: int) -> dict[str, Any]:
    """connect + listAllDomains + XMLDesc + lxml parse over ``sample`` of the hosts, per VM."""
    import libvirt
    from lxml import etree

    uris = estate(hosts)
    step = max(len(uris) // sample, 1)
    picked = uris[::step][:sample]
    t0 = time.perf_counter()
    n = 0
    for uri in picked:
        conn = libvirt.open(uri)
        for dom in conn.listAllDomains():
            etree.fromstring(dom.XMLDesc(0).encode())
            n += 1
        conn.close()
    return {"seconds": time.perf_counter() - t0, "vms": n}


def _in_child(*args: str) -> dict[str, Any]:
    proc = subprocess.run(
        ["nice", sys.executable, "-m", "bench.estate_scale", "--child", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _row(name: str, r: dict[str, Any], vms: int, floor_us: float | None) -> dict[str, Any]:
    us = r["seconds"] / max(vms, 1) * 1e6
    row = {
        "name": name,
        "min": r["seconds"],
        "median": r["seconds"],
        "max": r["seconds"],
        "n": 1,
        "us_per_vm": us,
        "peak_rss": r["peak_rss"],
        "findings": r.get("findings"),
    }
    if floor_us:
        row["ratio_to_floor"] = us / floor_us
    per_s = vms / r["seconds"]
    note = [f"{per_s:,.0f} VMs/s ({per_s / 2:,.0f} per core, 2 cores), master CPU {r['cpu']:.0f} s"]
    if "db_bytes" in r:
        note.append(f"PostgreSQL {r['db_bytes'] / 2**30:.2f} GiB")
        note.append(
            "pages (ms): " + ", ".join(f"{k[5:-3]} {v}" for k, v in r.items() if k.startswith("page_") and k.endswith("_ms"))
        )  # fmt: skip
    row["note"] = "; ".join(note)
    return row


def run(full: bool) -> list[dict[str, Any]]:
    hosts = 10_000 if full else 200
    vms = hosts * PER_HOST
    url = pg_url()
    if url is None:
        return [
            {
                "name": "estate scale",
                "note": "not measured: no PostgreSQL (scripts/start-postgres.sh)",
            }
        ]
    estate(hosts)  # written once, cached, outside the timings
    f = floor(hosts, 200)
    floor_us = f["seconds"] / f["vms"] * 1e6
    rows = [
        {
            "name": f"floor: test-driver read + parse ({f['vms']:,} VMs of the estate)",
            "median": f["seconds"],
            "us_per_vm": floor_us,
            "n": 1,
        }
    ]
    r = _in_child("stream", str(hosts), url)
    rows.append(_row(f"stream {vms:,} VMs / {hosts:,} hosts into PostgreSQL", r, vms, floor_us))
    if not full:
        w = _in_child("whole", str(hosts), url)
        rows.append(_row(f"whole-estate Sweep {vms:,} VMs (in memory)", w, vms, floor_us))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", nargs="+", metavar="ARG")
    ap.add_argument("--full", action="store_true")
    args = ap.parse_args()
    if args.child:
        mode, hosts, url = args.child[0], int(args.child[1]), args.child[2]
        print(json.dumps(child(mode, hosts, url, None)))
        return
    for row in run(args.full):
        print(json.dumps(row))


if __name__ == "__main__":
    main()

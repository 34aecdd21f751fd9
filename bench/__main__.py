"""Run every benchmark; write bench/results/latest.json and latest.md.

``python -m bench`` is the quick mode (< 5 minutes); ``python -m bench --full`` the full size.
``--only sweep,policy`` runs some sections. A section that cannot run (no libvirtd, no image)
becomes a row saying why, never a failed run.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import (
    aws,
    aws_watch,
    distributed,
    estate_scale,
    estate_workers,
    inspection,
    lineage,
    oval,
    policy_eval,
    remote_disks,
    startup,
    sweep,
    targets,
    vsphere_disk,
    vsphere_events,
    vsphere_inventory,
    watch,
)
from bench.common import RESULTS, machine_facts

COLUMNS = (
    "name",
    "min",
    "median",
    "max",
    "n",
    "us_per_vm",
    "ratio_to_floor",
    "excl_connect",
    "p50_ms",
    "p95_ms",
    "max_ms",
    "evals_per_second",
    "images_per_minute",
    "read_pct",
    "cpu_pct",
    "libvirtd_cpu_pct",
    "reads",
    "remote_ms",
    "rss",
    "peak_rss",
    "findings",
    "packages",
    "note",
)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v).replace("|", "/")


def _table(rows: list[dict[str, Any]]) -> list[str]:
    cols = [c for c in COLUMNS if any(c in r and r[c] not in ("", None) for r in rows)]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c, "")
            if c in ("peak_rss", "rss"):
                v = f"{v / 2**20:.0f} MiB" if v else ""
            cells.append("" if v is None else _fmt(v))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def markdown(results: dict[str, Any]) -> str:
    lines = [f"# vmwarden benchmarks ({results['mode']}, {results['at']})", ""]
    lines.append("Machine: " + ", ".join(f"{k} {v}" for k, v in results["machine"].items()))
    lines.append(f"Took {results.get('seconds', 0):.0f} s. Times in seconds unless named.")
    if results.get("targets"):
        lines += ["", "## Targets (issue 6)", ""]
        lines.append("| target | measured | met |")
        lines.append("|---|---|---|")
        for t in results["targets"]:
            lines.append(f"| {t['target']} | {t['measured']} | {t['met']} |")
    for section, rows in results["sections"].items():
        lines += ["", f"## {section}", ""]
        lines += _table(rows)
    return "\n".join(lines) + "\n"


def _section(name: str, fn: Callable[[], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    print(f"bench: {name} ...", file=sys.stderr, flush=True)
    t0 = time.monotonic()
    try:
        rows = fn()
    except Exception as exc:  # a broken section is a row saying so; the others still run
        traceback.print_exc()
        rows = [{"name": name, "note": f"not measured: {type(exc).__name__}: {exc}"}]
    print(f"bench: {name} took {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--full", action="store_true", help="full sizes (slow)")
    ap.add_argument(
        "--only",
        default="",
        help="comma-separated: startup,sweep,inspection,remote,vsphere-disk,policy,lineage,oval,watch",
    )
    args = ap.parse_args()
    only = set(filter(None, args.only.split(",")))
    mode = "full" if args.full else "quick"
    sizes = [1000, 10_000, 50_000] if args.full else [1000, 10_000]
    repeats = 5 if args.full else 3
    t0 = time.monotonic()
    sections: dict[str, list[dict[str, Any]]] = {}
    plan: list[tuple[str, str, Callable[[Path], list[dict[str, Any]]]]] = [
        ("startup", "CLI start-up (seconds, fresh processes)", lambda _tmp: startup.run()),
        (
            "sweep",
            "Sweep (seconds; floor = connect + listAllDomains + XMLDesc + lxml parse)",
            lambda tmp: sweep.run(sizes, repeats, tmp, naive_sample=100 if args.full else 30),
        ),
        (
            "policy",
            "Policy evaluation (one core)",
            lambda _tmp: policy_eval.run(100_000, repeats if args.full else 1),
        ),
        (
            "inspection",
            "Inspection (Debian 12 minbase qcow2; seconds per image)",
            lambda _tmp: inspection.run(args.full, repeats),
        ),
        (
            "remote",
            "Remote disks (#12.3; Debian 12 minbase via vol.download vs local; seconds)",
            lambda _tmp: remote_disks.run(repeats + 2),
        ),
        (
            "vsphere-disk",
            "vSphere disks (#13.3; Debian 12 minbase VMDK over datastore HTTPS vs local; s)",
            lambda _tmp: vsphere_disk.run(repeats + 2),
        ),
        (
            "vsphere-inventory",
            "vSphere inventory (#13.2; vcsim; seconds per sweep, same session both sides)",
            lambda _tmp: vsphere_inventory.run(repeats + 2),
        ),
        (
            "vsphere-events",
            "vSphere watch (#13.5; vcsim; power-on seen in ms, events vs 5 s poll; observe s)",
            lambda _tmp: vsphere_events.run(repeats),
        ),
        (
            "aws",
            "EC2 (#14; moto: inventory vs bare describe_instances; EBS snapshot read; s)",
            lambda _tmp: aws.run(args.full, repeats),
        ),
        (
            "aws-watch",
            "EC2 watch and quarantine (#14.5/6; moto: start seen in ms, SQS vs 5 s poll; s)",
            lambda _tmp: aws_watch.run(repeats),
        ),
        (
            "distributed",
            "Scale-out (#16; Debian 12 minbase; a host's Dask worker vs vol.download; seconds)",
            lambda _tmp: distributed.run(repeats),
        ),
        (
            "estate-scale",
            "Estate scale (#16.4; streaming sweep into PostgreSQL: 1M VMs / 10k hosts in --full, "
            "20k quick; seconds)",
            lambda _tmp: estate_scale.run(args.full),
        ),
        (
            "estate-workers",
            "Scale-out of the streaming sweep (#16; the same sweep in the master and on 1 and 2 "
            "Dask workers into PostgreSQL: 1,000 hosts / 100k VMs in --full, 40 quick; seconds)",
            lambda _tmp: estate_workers.run(args.full),
        ),
        (
            "lineage",
            "Content lineage (#12.4; Debian 12 minbase; seconds per disk)",
            lambda _tmp: lineage.run(repeats),
        ),
        (
            "oval",
            "OVAL (#15.1; Debian 11 SSG OVAL, 487 definitions, on the Debian 12 minbase; s)",
            lambda _tmp: oval.run(repeats),
        ),
        (
            "watch",
            "Exposure window (real libvirtd) and watch footprint",
            lambda _tmp: (
                watch.exposure(30 if args.full else 5)
                + watch.footprint(sweep.fleet(10_000), sweep.POLICY, 60 if args.full else 15)
            ),
        ),
    ]
    with tempfile.TemporaryDirectory(prefix="vmwarden-bench-") as tmp:
        for key, title, fn in plan:
            if not only or key in only:
                sections[title] = _section(key, lambda fn=fn: fn(Path(tmp)))
    results: dict[str, Any] = {
        "mode": mode,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_facts(),
        "seconds": time.monotonic() - t0,
        "sections": sections,
    }
    results["targets"] = targets.judge(sections)
    RESULTS.mkdir(parents=True, exist_ok=True)
    md = markdown(results)
    for stem in ("latest", mode):  # quick.md / full.md keep the last run of each mode
        (RESULTS / f"{stem}.json").write_text(json.dumps(results, indent=2, default=str))
        (RESULTS / f"{stem}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()

"""Issue 6's targets, judged from one run's rows: what was measured and whether it is met.

A target whose rows are missing (section skipped, not measurable here) says so rather than
passing. Benchmarks are not tests: nothing fails on a missed target.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

Rows = dict[str, list[dict[str, Any]]]


def _all(sections: Rows) -> list[dict[str, Any]]:
    return [r for rows in sections.values() for r in rows]


def _find(rows: Iterable[dict[str, Any]], pattern: str) -> dict[str, Any] | None:
    for r in rows:
        if re.match(pattern, str(r.get("name", ""))) and "median" in r:
            return r
    return None


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("yes" if ok else "**no**")


def judge(sections: Rows) -> list[dict[str, str]]:
    rows = _all(sections)
    out: list[dict[str, str]] = []

    def add(target: str, measured: str, ok: bool | None) -> None:
        out.append({"target": target, "measured": measured, "met": _verdict(ok)})

    for cmd in ("vmwarden --help", "vmwarden report findings"):
        if r := _find(rows, re.escape(cmd)):
            add(
                f"`{cmd}` starts in well under 0.5 s",
                f"{r['median']:.3f} s ({r['ratio_to_floor']:.1f}x `import typer`)",
                r["median"] < 0.4,
            )
    sizes = sorted(
        {int(m.group(1)) for r in rows if (m := re.match(r"scan (\d+)$", str(r.get("name"))))}
    )
    if sizes:
        big = sizes[-1]
        scan, rescan = _find(rows, rf"scan {big}$"), _find(rows, rf"rescan {big} ")
        where = f"at {big:,} VMs" + ("" if big >= 50_000 else " (50k only in --full)")
        floor = _find(rows, rf"floor {big}$")

        def best(r: dict[str, Any]) -> str:  # mins: the least disturbed runs of each
            return f" ({r['min'] / floor['min']:.2f}x on mins)" if floor else ""

        if scan:
            add(
                "scan ≤ 2x the floor at 50k",
                f"{scan['ratio_to_floor']:.2f}x{best(scan)} {where}; "
                f"{scan['excl_connect']:.1f}x without the test driver's connect",
                scan["ratio_to_floor"] <= 2,
            )
        if rescan:
            add(
                "re-scan of an unchanged fleet ≤ 1x the floor",
                f"{rescan['ratio_to_floor']:.2f}x{best(rescan)} {where}; "
                f"{rescan['excl_connect']:.1f}x without connect",
                rescan["ratio_to_floor"] <= 1,
            )
        if len(sizes) >= 2:
            small = _find(rows, rf"scan {sizes[-2]}$")
            if scan and small:
                growth = scan["us_per_vm"] / small["us_per_vm"]
                add(
                    "linear growth (µs per VM flat)",
                    f"{small['us_per_vm']:.0f} → {scan['us_per_vm']:.0f} µs/VM "
                    f"({sizes[-2]:,} → {big:,})",
                    growth <= 1.25,
                )
    warm = _find(rows, r"InspectorPool, warm")
    hit = _find(rows, r"FactsCache.lookup")
    vi = _find(rows, r"virt-inspector")
    if warm:
        add("inspection warm ≤ 0.2 s per image", f"{warm['median']:.2f} s", warm["median"] <= 0.2)
        if "read_frac" in warm:
            add(
                "inspection reads < 2% of the image",
                str(warm.get("read_pct")),
                warm["read_frac"] < 0.02,
            )
    if hit:
        ms = hit["median"] * 1000
        add("cache hit ≤ 10 ms", f"{ms:.1f} ms", ms <= 10)
    if warm and vi:
        x = vi["median"] / warm["median"]
        add("≥ 20x faster than virt-inspector", f"{x:.0f}x (warm) ", x >= 20)
    elif warm:
        add("≥ 20x faster than virt-inspector", "virt-inspector not measured", None)
    ev = _find(rows, r"evaluate 100,000")
    if ev:
        add("100k VMs x 20 rules ≤ 5 s, one core", f"{ev['median']:.1f} s", ev["median"] <= 5)
        small = _find(rows, r"evaluate 10,000")
        if small:
            growth = ev["us_per_vm"] / small["us_per_vm"]
            add(
                "cross-VM rules not quadratic",
                f"{small['us_per_vm']:.0f} → {ev['us_per_vm']:.0f} µs/VM (10k → 100k)",
                growth <= 1.5,
            )
    signed = _find(rows, r"lineage: sign template")
    if signed:
        compared = [r for r in rows if str(r.get("name", "")).startswith("lineage: compare")]
        plain = [r for r in compared if not r.get("compressed")]
        worst = max([signed, *plain], key=lambda r: r["read_frac"])
        packed = "; ".join(
            f"compressed {r['name'].split()[-1]}: {r['read_pct']}"
            for r in compared
            if r.get("compressed")
        )
        add(
            "lineage signature reads < 2% of a disk (#12.4)",
            f"signing {signed['read_pct']}; the most of any uncompressed disk "
            f"{worst['read_pct']}"
            + (f" ({packed}: a sample costs a whole grain)" if packed else ""),
            worst["read_frac"] < 0.02,
        )
        rates = next((r for r in rows if str(r.get("name", "")).startswith("lineage: error")), None)
        if rates:
            add(
                "lineage: no false positive or negative on #12.4's cases",
                rates["note"],
                "negatives 0/" in rates["note"] and "positives 0/" in rates["note"],
            )
    sampled = _find(rows, r"lineage: compare remote volume, exact")
    if sampled:
        cached = _find(rows, r"lineage: compare remote volume, through")
        add(
            "lineage comparison of a remote disk reads < 2% of it (#12)",
            f"{sampled['read_pct']} transferred, {sampled['reads']:.0f} downloads"
            + (f" (through the block cache: {cached['read_pct']})" if cached else ""),
            sampled["read_frac"] < 0.02,
        )
    remote = _find(rows, r"inspect, remote volume")
    if remote:
        add(
            "remote inspection ≤ 2x the local warm time (#12.3)",
            f"{remote['median']:.2f} s, {remote['ratio_to_floor']:.2f}x local (qemu+tcp loopback)",
            remote["ratio_to_floor"] <= 2,
        )
        add(
            "remote bytes transferred ≤ 3x what dissect needs (#12.3)",
            f"{remote['read_pct'] / 100:.2f}x in {remote['reads']:.0f} downloads",
            remote["read_pct"] <= 300,
        )
    vinv = _find(rows, r"vmwarden inventory, [\d,]+ VMs on")
    if vinv:
        size = str(vinv["name"]).removeprefix("vmwarden inventory, ")
        big = int(size.split()[0].replace(",", "")) >= 2000 and int(size.split()[-2]) >= 50
        add(
            "vSphere inventory ≤ 1.5x one bare PropertyCollector retrieval, ≥ 2,000 VMs on "
            "≥ 50 hosts (#13.2)",
            f"{vinv['ratio_to_floor']:.2f}x on medians ({vinv['note']}), "
            f"{vinv['us_per_vm']:.0f} µs/VM ({size}, vcsim)",
            vinv["ratio_to_floor"] <= 1.5 and big,
        )
    vmdk = _find(rows, r"inspect, VMDK over datastore HTTPS")
    if vmdk:
        add(
            "vSphere VMDK inspection over HTTPS ≤ 2x the local read (#13.3)",
            f"{vmdk['median']:.2f} s, {vmdk['ratio_to_floor']:.2f}x local (vcsim, loopback TLS)",
            vmdk["ratio_to_floor"] <= 2,
        )
        add(
            "vSphere bytes transferred vs what dissect needs (#13.3; no target, ≤ 3x as #12.3)",
            f"{vmdk['read_pct'] / 100:.2f}x in {vmdk['reads']:.0f} requests",
            vmdk["read_pct"] <= 300,
        )
    seen = _find(rows, r"start seen, event feed")
    if seen:
        polled = _find(rows, r"start seen, inventory poll")
        beside = f"; the 5 s inventory poll: p50 {polled['p50_ms']:.0f} ms" if polled else ""
        add(
            "vSphere power-on seen by watch ≤ 1 s (event feed, p95; #13.5)",
            f"p50 {seen['p50_ms']:.0f} ms, p95 {seen['p95_ms']:.0f} ms (vcsim){beside}",
            seen["p95_ms"] <= 1000,
        )
    obs = _find(rows, r"observe one VM")
    if obs:
        add(
            "vSphere gate's read of one VM ≤ 0.1x a full property retrieval (#13.5)",
            f"{obs['median'] * 1000:.1f} ms, {obs['ratio_to_floor']:.4f}x the full retrieval",
            obs["ratio_to_floor"] <= 0.1,
        )
    expo = _find(rows, r"exposure: STARTED")
    if expo:
        add(
            "exposure window (no target; floor: one updateDeviceFlags, 3-16 ms)",
            f"p50 {expo['p50_ms']:.0f} ms, p95 {expo['p95_ms']:.0f} ms, max {expo['max_ms']:.0f} ms",
            None,
        )
    _hook(rows, add)
    _aws_watch(rows, add)
    _estate_scale(rows, add)
    _estate_workers(rows, add)
    foot = next((r for r in rows if "cpu_pct" in r), None)
    if foot:
        add("watch idle CPU < 1% of a core", f"{foot['cpu_pct']:.2f}%", foot["cpu_pct"] < 1)
        mib = foot["rss"] / 2**20
        if foot.get("fleet_in_libvirtd"):
            add("watch RSS < 200 MB", f"{mib:.0f} MiB (10k fleet served by libvirtd)", mib < 200)
            add(
                "libvirtd CPU caused by watch (idle)",
                f"{foot['libvirtd_cpu_pct']:.2f}% of a core beyond libvirtd's own idle",
                foot["libvirtd_cpu_pct"] < 1,
            )
        else:
            driver = _find(rows, r"floor 10000$")  # a process holding just the opened fleet
            own = f"; {mib - driver['peak_rss'] / 2**20:.0f} MiB beyond it" if driver else ""
            add(
                "watch RSS < 200 MB",
                f"{mib:.0f} MiB incl. the in-process test driver's 10k fleet{own}",
                mib < 200,
            )
    _oval(rows, add)
    _distributed(rows, add)
    _aws(rows, add)
    return out


def _aws(rows: list[dict[str, Any]], add: Any) -> None:
    """#14: EC2 inventory ≤ 1.5x the bare paginated describe_instances at ≥ 5,000 instances
    (moto; quick mode measures 2,000), and the EBS snapshot read against one block at a time."""
    inv = _find(rows, r"vmwarden inventory, [\d,]+ instances")
    if inv:
        size = int(str(inv["name"]).split(", ")[1].split(" ")[0].replace(",", ""))
        where = f"{size:,} instances" + ("" if size >= 5000 else " (5,000 only in --full)")
        add(
            "EC2 inventory ≤ 1.5x the bare paginated describe_instances at ≥ 5,000 (moto)",
            f"{inv['ratio_to_floor']:.2f}x at {where}; {inv.get('note', '')}",
            inv["ratio_to_floor"] <= 1.5 if size >= 5000 else None,
        )
    par = _find(rows, r"inspect ebs snapshot, parallel")
    one = _find(rows, r"inspect ebs snapshot, one block")
    if par and one:  # no target number: the issue asks for time and requests side by side
        add(
            "EBS snapshot inspection vs one block at a time (Trivy's way; no target number)",
            f"{par['median']:.2f} s vs {one['median']:.2f} s ({par['ratio_to_floor']:.2f}x), "
            f"{par['reads']} vs {one['reads']} get_snapshot_block requests (moto, loopback)",
            None,
        )
    par = _find(rows, r"read whole ebs snapshot, parallel")
    one = _find(rows, r"read whole ebs snapshot, one block")
    if par and one:
        add(
            "EBS snapshot read through faster than one block at a time (no target number)",
            f"{par['median']:.2f} s vs {one['median']:.2f} s ({par['ratio_to_floor']:.2f}x), "
            f"{par['reads']} vs {one['reads']} requests",
            par["median"] < one["median"],
        )


def _distributed(rows: list[dict[str, Any]], add: Any) -> None:
    """#16: a host's worker reading its own disks ≥ 2x the images per minute of the same
    sweep reading them through the connection (one inspector each side, same run)."""
    local = _find(rows, r"sweep of \d+ disks, read by the host's Dask worker")
    remote = _find(rows, r"sweep of \d+ disks, read through vol.download")
    if local and remote:
        ratio = local["images_per_minute"] / remote["images_per_minute"]
        add(
            "Dask worker's local reads ≥ 2x the remote reads' images/min, per worker (#16)",
            f"{local['images_per_minute']:.1f} vs {remote['images_per_minute']:.1f} images/min "
            f"({ratio:.2f}x; 2 cores shared by master, worker and libvirtd)",
            ratio >= 2,
        )


def _oval(rows: list[dict[str, Any]], add: Any) -> None:
    """#15.1: the Debian 11 OVAL on the Debian image in a warm worker, against oscap on the
    mounted root (medians), with the bytes read from the image."""
    target = "OVAL warm worker ≤ 1 s per image and ≥ 5x faster than oscap on a mounted root"
    ours, theirs = _find(rows, r"vmwarden, warm worker"), _find(rows, r"oscap oval eval")
    if ours is None or theirs is None:
        add(target, "not measured (section skipped)", None)
        return
    ratio = theirs["median"] / ours["median"]
    add(
        target,
        f"{ours['median']:.2f} s (min {ours['min']:.2f}), oscap {theirs['median']:.2f} s: "
        f"{ratio:.1f}x; {ours.get('note', '')}",
        ours["median"] <= 1 and ratio >= 5,
    )


def _hook(rows: list[dict[str, Any]], add: Any) -> None:
    """The hook rows carry notes rather than medians: refused starts, and the p50 added."""
    hook = next(
        (r for r in rows if str(r.get("name", "")).startswith("exposure with the admission hook")),
        None,
    )
    if hook is None:
        add("exposure with the admission hook is zero", "not measured (section skipped)", None)
        return
    note = str(hook.get("note", ""))
    if "exposure zero:" not in note:
        add("exposure with the admission hook is zero", note, None)
        return
    added = _find(rows, r"admitted create\(\) without the hook")
    extra = f"; start-up {added['note']}" if added and added.get("note") else ""
    add("exposure with the admission hook is zero", note + extra, "exposure zero: True" in note)


def _aws_watch(rows: list[dict[str, Any]], add: Any) -> None:
    """EC2 under watch (#14.6) and its quarantine (#14.5): see bench/aws_watch.py."""
    seen = _find(rows, r"start seen, SQS")
    if seen:
        polled = _find(rows, r"start seen, inventory poll every 5 s \(\d+ instances")
        beside = f"; the 5 s poll: p50 {polled['p50_ms']:.0f} ms" if polled else ""
        add(
            "EC2 start seen by watch ≤ 1 s with an SQS queue (p95; #14.6)",
            f"p50 {seen['p50_ms']:.0f} ms, p95 {seen['p95_ms']:.0f} ms (moto){beside}",
            seen["p95_ms"] <= 1000,
        )
    quar = _find(rows, r"quarantine \+ release \(Quarantiner")
    if quar:
        add(
            "EC2 quarantine + release, 2 ENIs in 2 VPCs (no target; floor: the 4 bare modify "
            "calls; vmwarden adds the reads that make it exact and the durable journal)",
            f"{quar['median'] * 1000:.0f} ms, {quar['ratio_to_floor']:.1f}x the floor (moto)",
            None,
        )


def _estate_scale(rows: list[dict[str, Any]], add: Any) -> None:
    """#16.4: the streaming sweep's master stays within 2 GB (bench/estate_scale.py)."""
    r = _find(rows, r"stream [\d,]+ VMs / [\d,]+ hosts into PostgreSQL")
    if r is None:
        return
    size = str(r["name"]).split()[1]
    full = size == "1,000,000"
    add(
        "1M VMs / 10k hosts into PostgreSQL: master peak RSS ≤ 2 GB (#16.4)",
        f"{r['peak_rss'] / 2**20:,.0f} MiB at {size} VMs"
        + ("" if full else " (1M only in --full)")
        + f"; {r['median']:,.0f} s; {r['note']}",
        r["peak_rss"] <= 2 * 2**30 if full else None,
    )


def _estate_workers(rows: list[dict[str, Any]], add: Any) -> None:
    """#16: the same 1k-host streaming sweep at 1 and 2 workers (bench/estate_workers.py);
    no speed target (2 cores shared with the master and PostgreSQL), the same findings."""
    got = {
        n: _find(rows, rf"[\d,]+-host sweep \(.*\) {where}$")
        for n, where in ((0, "in the master"), (1, "on 1 Dask worker"), (2, "on 2 Dask workers"))
    }
    base, one, two = got[0], got[1], got[2]
    if base is None or one is None or two is None:
        return
    size = str(base["name"]).split(" (")[0]
    add(
        f"{size} at 1 and 2 workers: same findings (#16 scaling; no speed target)",
        f"master {base['median']:,.0f} s, 1 worker {one['median']:,.0f} s, 2 workers "
        f"{two['median']:,.0f} s = {one['median'] / two['median']:.2f}x the speed of 1 "
        "(2 cores shared by master, PostgreSQL, workers)",
        base["findings"] == one["findings"] == two["findings"],
    )

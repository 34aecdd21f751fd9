"""Each page's context: one read of what it needs from the store, shaped for its template."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from vmwarden.api.vmfacts import guest_of, template_clones
from vmwarden.errors import VmwardenError
from vmwarden.model import ActionRecord
from vmwarden.store.pages import JournalQuery, Pages
from vmwarden.web import charts, estate, review

AUDIT_PAGE_SIZE = 100
# The journal's action names (vmwarden.enforce, vmwarden.store.audit/exceptions/users/sessions).
AUDIT_ACTIONS = ("quarantine", "release", "pause", "shutdown", "snapshot", "notify", "tag",
                 "template-approve", "template-revoke", "user-add", "user-disable",
                 "user-rotate", "finding-acknowledge", "exception-request",
                 "exception-approve", "exception-reject", "scan-request",
                 "login-failed", "session-end")  # fmt: skip
VM_LIST_CAP = 1000  # rows rendered at once; the search narrows the rest
FLAGS = {
    "rogue": "rogue (unapproved template)",
    "quarantined": "quarantined",
    "dormant": f"dormant (> {estate.DORMANT_DAYS} days off)",
    "findings": "with open findings",
}
STATE_CSS = {
    "running": "state-running",
    "paused": "state-paused",
    "shutoff": "state-off",
    "crashed": "state-bad",
    "gone": "state-gone",
}


def _state_css(state: str) -> str:
    return STATE_CSS.get(state, "state-other")


def _attachment(nic: dict[str, Any]) -> str:
    return str(nic.get("network") or nic.get("bridge") or nic.get("source_dev") or nic.get("type"))


def nic_places(vm: dict[str, Any], held: ActionRecord | None) -> list[dict[str, Any]]:
    """Each NIC with where it is now and, while quarantined, where it belongs.

    The stored record is as of the last sweep; a quarantine since moved the NIC, so the
    record's network is stale until the next sweep: then the quarantine entry says where the
    NIC is (its network) and the record where it was. A record written while held carries
    ``quarantined_from`` (the pre-quarantine attachment) for the same purpose."""
    changes = held.changes if held is not None else {}
    q_network = changes.get("network")
    held_macs = {str(n.get("mac")).lower() for n in changes.get("nics") or [] if n.get("mac")}
    out = []
    for nic in vm.get("nics") or []:
        now = _attachment(nic)
        origin = nic.get("quarantined_from")
        belongs = _attachment(origin) if isinstance(origin, dict) else None
        is_held = str(nic.get("mac")).lower() in held_macs
        stale = bool(is_held and q_network and nic.get("network") != q_network)
        if stale:
            belongs, now = belongs or now, str(q_network)
        out.append(
            {
                "nic": nic,
                "now": now,
                "belongs": belongs if belongs != now else None,
                "held": is_held or origin is not None,
                "stale": stale,
            }
        )
    return out


def _worst(findings: list[dict[str, Any]]) -> str | None:
    for sev in estate.SEVERITIES:
        if any(f["severity"] == sev for f in findings):
            return sev
    return None


def overview_page(store: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    all_vms = store.list_vms(include_gone=True)
    live = [vm for vm in all_vms if vm.get("gone_at") is None]
    images = store.list_images()
    all_findings = store.findings()
    open_findings = [f for f in all_findings if f.get("status") == "open"]
    held = estate.quarantined(store)
    ov = estate.overview(live, images, open_findings, held, now)

    scans = list(reversed(store.recent_scans(limit=30)))
    times = estate.scan_times(scans)
    x_labels = [t.strftime("%m-%d %H:%M") for t in times]
    vm_chart = charts.lines(
        "VMs over time (one point per scan)",
        x_labels,
        [charts.Series("VMs", "series-a", estate.vm_count_over_time(all_vms, times))],
    )
    trend = estate.findings_over_time(all_findings, times)
    findings_chart = charts.lines(
        "Open findings per scan, by severity",
        x_labels,
        [
            charts.Series(sev, f"sev-{sev}", trend[sev])
            for sev in estate.SEVERITIES
            if any(trend[sev])
        ]
        or [charts.Series("open findings", "series-a", [0] * len(times))],
    )
    ages = estate.age_histogram(live, now)
    age_chart = charts.bars(
        "Powered-off VMs by time off",
        [label for label, _ in ages],
        [n for _, n in ages],
        ["series-b"] * len(ages),
    )
    states = sorted(ov.by_state.items(), key=lambda kv: -kv[1])
    state_meter = charts.meter([(s, _state_css(s), n) for s, n in states])
    sev_meter = charts.meter([(s, f"sev-{s}", ov.by_severity.get(s, 0)) for s in estate.SEVERITIES])
    hosts = sorted(ov.by_host.items())
    host_states: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for vm in live:
        host_states[str(vm.get("host"))][str(vm.get("state"))] += 1
    return {
        "ov": ov,
        "severities": estate.SEVERITIES,
        "hosts": hosts,
        "host_states": host_states,
        "state_css": _state_css,
        "state_meter": state_meter,
        "sev_meter": sev_meter,
        "vm_chart": vm_chart,
        "findings_chart": findings_chart,
        "age_chart": age_chart,
        "held": held[:8],
        "last_scan": scans[-1] if scans else None,
        "scan_count": len(scans),
        "dormant_days": estate.DORMANT_DAYS,
    }


def vms_page(store: Any, *, q: str, host: str, state: str, flag: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    all_vms = store.list_vms()
    open_findings = store.findings(status="open")
    by_vm: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for f in open_findings:
        if f.get("resource") == "vm":
            by_vm[f["id"]].append(f)
    held = {rec.id: rec for rec in estate.quarantined(store)}
    rogue = {f["id"] for f in open_findings if f["rule"] in estate.ROGUE_RULES}

    def keep(vm: dict[str, Any]) -> bool:
        if host and vm.get("host") != host:
            return False
        if state and vm.get("state") != state:
            return False
        if flag == "rogue" and vm["id"] not in rogue:
            return False
        if flag == "quarantined" and vm["id"] not in held:
            return False
        if flag == "dormant" and not estate.is_dormant(vm, now):
            return False
        if flag == "findings" and not by_vm.get(vm["id"]):
            return False
        return estate.matches(vm, q)

    rows = [vm for vm in all_vms if keep(vm)]
    return {
        "vms": rows[:VM_LIST_CAP],
        "matched": len(rows),
        "total": len(all_vms),
        "cap": VM_LIST_CAP,
        "q": q,
        "host": host,
        "state": state,
        "flag": flag,
        "flags": FLAGS,
        "hosts": sorted({str(vm.get("host")) for vm in all_vms}),
        "states": sorted({str(vm.get("state")) for vm in all_vms}),
        "findings_of": by_vm,
        "worst": _worst,
        "held": held,
        "nic_places": nic_places,
        "state_css": _state_css,
        "days_off": lambda vm: estate.days_off(vm, now),
    }


def _timeline(history: list[Any]) -> list[dict[str, Any]]:
    """History grouped by instant, newest first: one row per sighting that changed something."""
    groups: dict[tuple[datetime, str], list[Any]] = {}
    for entry in history:
        groups.setdefault((entry.at, entry.source), []).append(entry)
    rows = []
    for (at, source), entries in groups.items():
        first = all(e.old is None for e in entries)
        rows.append({"at": at, "source": source, "changes": entries, "first": first})
    rows.sort(key=lambda r: r["at"], reverse=True)
    return rows


def _guest_summary(guest: dict[str, Any] | None) -> dict[str, Any] | None:
    if not guest:
        return None
    packages = guest.get("packages")
    users = guest.get("users")
    return {
        "os": guest.get("os_pretty")
        or " ".join(str(x) for x in (guest.get("os_name"), guest.get("os_version")) if x)
        or None,
        "hostname": guest.get("hostname"),
        "kernels": guest.get("kernels"),
        "packages": None if packages is None else len(packages),
        "package_sample": sorted(
            (f"{p.get('name')} {p.get('version')}" for p in (packages or [])),
        )[:40],
        "users": None
        if users is None
        else [u.get("name") for u in users if u.get("password") == "hash" or u.get("uid") == 0],
        "services": guest.get("services_enabled"),
        "root_login": (guest.get("sshd") or {}).get("permitrootlogin"),
        "time_sync": [k for k, v in (guest.get("time_sync") or {}).items() if v is True],
        "encrypted": guest.get("encrypted"),
        "baselines": _baselines(guest.get("benchmarks")),
        "filesystems": guest.get("filesystems"),
        "machine_id": guest.get("machine_id"),
        "inspected_at": guest.get("inspected_at"),
        "errors": guest.get("errors") or [],
    }


def _baselines(results: Any) -> list[dict[str, Any]]:
    """Each SCAP benchmark kept with the facts (``engine.benchmarks``): its profile, score
    and failed rules by short id, or why there is no score."""
    out: list[dict[str, Any]] = []
    for key, got in sorted((results or {}).items()) if isinstance(results, dict) else []:
        if not isinstance(got, dict):
            continue
        path, profile, *_ = [*str(key).split("|"), "", ""]
        name = got.get("profile") or profile or got.get("benchmark") or "default selection"
        out.append(
            {
                "profile": str(name).rsplit("_profile_", 1)[-1],
                "datastream": path.rsplit("/", 1)[-1],
                "score": got.get("score"),
                "failed": [str(r).rsplit("_rule_", 1)[-1] for r in got.get("failed") or []],
                "error": got.get("error"),
                "applicable": got.get("platform_applicable") is not False,
            }
        )
    return out


def _template(vm: dict[str, Any], clones: list[dict[str, Any]]) -> dict[str, Any]:
    """What the Template line says: the name the metadata declares and the approved template
    the disks were cloned from (by their backing root), which need not agree."""
    declared = (vm.get("meta") or {}).get("template")
    approved = sorted({c["template"] for c in clones})
    return {"declared": declared, "approved": approved, "clones": clones}


def vm_detail_page(store: Any, vm_id: str, settings: Any = None) -> dict[str, Any] | None:
    vm = store.get_vm(vm_id)
    if vm is None:
        return None
    now = datetime.now(UTC)
    findings = review.vm_findings(store, vm["id"])
    active = store.active_quarantine(vm["id"])
    state = "gone" if vm.get("gone_at") else str(vm.get("state"))
    return {
        "vm": vm,
        "vm_state": state,
        "state_css": _state_css,
        "findings": findings,
        "timeline": _timeline(store.vm_history(vm["id"])),
        "actions": store.journal_entries(vm_id=vm["id"], limit=100),
        "active": active,
        "nics": nic_places(vm, active),
        "exceptions": review.vm_exceptions(store, vm["id"]),
        "guest": _guest_summary(guest_of(store, vm)),
        "template_of": _template(vm, template_clones(store, vm, settings)),
        "days_off": estate.days_off(vm, now),
        "dormant": estate.is_dormant(vm, now),
    }


def audit_page(
    store: Any, *, actor: str, action: str, vm: str, page_no: int, exclude: list[str] | None = None
) -> dict[str, Any]:
    """One page of the journal, newest first, filtered in the database. ``exclude`` leaves
    actions out (the hide-notify box: one alert per finding per sweep buries the rest)."""
    hidden = tuple(dict.fromkeys(a for a in exclude or () if a and a != action))
    vm_id = None
    note = None
    if vm:
        try:
            record = store.get_vm(vm)
        except VmwardenError as exc:  # an ambiguous name: say so, list nothing
            record, note = None, str(exc)
        vm_id = record["id"] if record else vm
    query = JournalQuery(
        actor=actor or None, action=action or None, vm_id=vm_id, exclude_actions=hidden
    )
    offset = (page_no - 1) * AUDIT_PAGE_SIZE
    entries, total = Pages(store).journal(query, limit=AUDIT_PAGE_SIZE, offset=offset)
    pages = max(1, -(-total // AUDIT_PAGE_SIZE))
    base: dict[str, Any] = {
        k: v for k, v in (("actor", actor), ("action", action), ("vm", vm)) if v
    }
    if hidden:
        base["exclude"] = list(hidden)
    return {
        "entries": entries,
        "total": total,
        "page_no": page_no,
        "pages": pages,
        "query": lambda n: "?" + urlencode({**base, "page": n}, doseq=True),
        "hidden": hidden,
        "actor": actor,
        "action": action,
        "vm": vm,
        "note": note,
        "actions_known": AUDIT_ACTIONS,
    }

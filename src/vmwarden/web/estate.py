"""What the dashboard shows, computed from the store's records (no SQL here: the store owns it).

Functions are pure over the lists the store returns, so a test can hand them records and a page
can be rendered from one read of each list. The meanings follow docs/POLICY.md: *dormant* is shut
off for more than ``DORMANT_DAYS`` (from history, else from the newest disk modification time),
*orphaned* is an image no VM uses directly or as a backing file and that is not a template,
*quarantined* is a VM whose latest quarantine is still holding it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from vmwarden.model import ActionRecord

DORMANT_DAYS = 30
SEVERITIES = ("critical", "high", "medium", "low", "info")
OFF_STATES = ("shutoff", "crashed")
# Rules whose filters include not-approved-template; the store keeps rule names, not filters,
# so without the policy these names are what "rogue" means.
ROGUE_RULES = frozenset({"unapproved-template", "not-approved-template", "rogue-vm"})
AGE_BUCKETS = ((0, 7, "< 1 week"), (7, 30, "1-4 weeks"), (30, 90, "1-3 months"),
               (90, 365, "3-12 months"), (365, None, "> 1 year"))  # fmt: skip
QUARANTINE_HOLDING = ("done", "pending", "partial")


def as_datetime(value: Any) -> datetime | None:
    """Store records carry datetimes or ISO strings (inside the JSON record); accept both."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def off_since(vm: dict[str, Any]) -> datetime | None:
    """When a powered-off VM went off: the witnessed state change, else its newest disk mtime."""
    if vm.get("state") not in OFF_STATES:
        return None
    since = as_datetime(vm.get("state_since"))
    if since is not None:
        return since
    mtimes = [
        m
        for disk in vm.get("disks") or []
        for layer in (disk.get("chain") or [])[:1]
        if (m := as_datetime(layer.get("mtime"))) is not None
    ]
    return max(mtimes) if mtimes else None


def days_off(vm: dict[str, Any], now: datetime) -> int | None:
    since = off_since(vm)
    return None if since is None else max(0, (now - since).days)


def is_dormant(vm: dict[str, Any], now: datetime) -> bool:
    days = days_off(vm, now)
    return days is not None and days > DORMANT_DAYS


def age_histogram(vms: Iterable[dict[str, Any]], now: datetime) -> list[tuple[str, int]]:
    """Powered-off VMs by how long they have been off; unknown ages get their own bar."""
    counts = [0] * len(AGE_BUCKETS)
    unknown = 0
    for vm in vms:
        if vm.get("state") not in OFF_STATES:
            continue
        days = days_off(vm, now)
        if days is None:
            unknown += 1
            continue
        for i, (low, high, _) in enumerate(AGE_BUCKETS):
            if days >= low and (high is None or days < high):
                counts[i] += 1
                break
    out = [(label, n) for (_, _, label), n in zip(AGE_BUCKETS, counts, strict=True)]
    if unknown:
        out.append(("unknown", unknown))
    return out


def orphaned_images(images: Iterable[dict[str, Any]], vms: Iterable[dict[str, Any]]) -> list[dict]:
    used = {
        layer.get("path")
        for vm in vms
        for disk in vm.get("disks") or []
        for layer in disk.get("chain") or []
    }
    return [
        img
        for img in images
        if img.get("kind") == "orphaned"
        or (
            img.get("kind") is None
            and not img.get("attached_to")
            and not img.get("template")
            and img.get("path") not in used
        )
    ]


def quarantined(store: Any, vm_ids: Iterable[str] | None = None) -> list[ActionRecord]:
    """The quarantines still holding a VM (newest first), one per VM."""
    seen: set[str] = set()
    out: list[ActionRecord] = []
    for entry in store.journal_entries(action="quarantine"):
        if entry.status not in QUARANTINE_HOLDING or entry.id in seen:
            continue
        seen.add(entry.id)
        if vm_ids is not None and entry.id not in vm_ids:
            continue
        active = store.active_quarantine(entry.id)
        if active is not None and active.journal_id == entry.journal_id:
            out.append(entry)
    return out


@dataclass
class Overview:
    """The numbers on the overview page."""

    vms: int = 0
    by_state: Counter[str] = field(default_factory=Counter)
    by_host: Counter[str] = field(default_factory=Counter)
    rogue: int = 0
    quarantined: int = 0
    dormant: int = 0
    orphaned: int = 0
    images: int = 0
    by_severity: Counter[str] = field(default_factory=Counter)
    open_findings: int = 0


def overview(
    vms: list[dict[str, Any]],
    images: list[dict[str, Any]],
    open_findings: list[dict[str, Any]],
    quarantines: list[ActionRecord],
    now: datetime,
    rogue_rules: frozenset[str] = ROGUE_RULES,
) -> Overview:
    live = [vm for vm in vms if vm.get("gone_at") is None]
    return Overview(
        vms=len(live),
        by_state=Counter(str(vm.get("state")) for vm in live),
        by_host=Counter(str(vm.get("host")) for vm in live),
        rogue=len({f["id"] for f in open_findings if f["rule"] in rogue_rules}),
        quarantined=len(quarantines),
        dormant=sum(1 for vm in live if is_dormant(vm, now)),
        orphaned=len(orphaned_images(images, live)),
        images=len(images),
        by_severity=Counter(str(f["severity"]) for f in open_findings),
        open_findings=len(open_findings),
    )


def _alive_at(first: Any, end: Any, at: datetime) -> bool:
    start = as_datetime(first)
    stop = as_datetime(end)
    return start is not None and start <= at and (stop is None or stop > at)


def scan_times(scans: list[dict[str, Any]]) -> list[datetime]:
    """The instants the trend charts sample: each finished sweep, oldest first."""
    times = [as_datetime(s.get("finished_at") or s.get("started_at")) for s in scans]
    return sorted(t for t in times if t is not None)


def vm_count_over_time(vms: list[dict[str, Any]], times: list[datetime]) -> list[int]:
    """How many VMs existed at each instant (first seen before it, not yet gone)."""
    return [sum(1 for vm in vms if _alive_at(vm.get("first_seen"), vm.get("gone_at"), t))
            for t in times]  # fmt: skip


def findings_over_time(
    findings: list[dict[str, Any]], times: list[datetime]
) -> dict[str, list[int]]:
    """Open findings per severity at each instant (opened before it, not yet resolved)."""
    out: dict[str, list[int]] = {sev: [0] * len(times) for sev in SEVERITIES}
    for f in findings:
        sev = str(f.get("severity"))
        if sev not in out:
            continue
        for i, t in enumerate(times):
            if _alive_at(f.get("first_seen"), f.get("resolved_at"), t):
                out[sev][i] += 1
    return out


def matches(vm: dict[str, Any], query: str) -> bool:
    """Free-text search over what operators type: name, id, host, owner, MAC, IP, network."""
    q = query.strip().lower()
    if not q:
        return True
    meta = vm.get("meta") or {}
    hay = [vm.get("name"), vm.get("id"), vm.get("host"), meta.get("owner"),
           meta.get("classification"), meta.get("template")]  # fmt: skip
    for nic in vm.get("nics") or []:
        hay += [
            nic.get("mac"),
            nic.get("network"),
            nic.get("bridge"),
            *(nic.get("addresses") or []),
        ]
    return any(q in str(h).lower() for h in hay if h)

"""Judge a framework's controls from what the store already knows: pass, fail or not-assessed.

Nothing is re-scanned here: a compliance report is evidence of what vmwarden saw and when,
so every verdict carries that evidence (the rules mapped to it, their open findings, the
scan that produced them). A control is *not assessed* — never passed — when vmwarden has no
evidence for it: no policy given, no rule of the policy maps to it, or no scan ever ran.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from vmwarden.model import Finding, Severity
from vmwarden.store.exceptions import ExceptionsRepo

if TYPE_CHECKING:
    from vmwarden.compliance.mapping import Control, Framework
    from vmwarden.policy.filters.base import Filter
    from vmwarden.policy.rules import Policy, Rule
    from vmwarden.store import Store

Status = Literal["pass", "fail", "not-assessed"]
EXAMPLES = 5


@dataclass(frozen=True, slots=True)
class HookFacts:
    """What the host shows about the power-on hook (read by the caller: a host fact)."""

    installed: bool | None  # None: could not tell
    detail: str = ""


@dataclass(slots=True)
class Evidence:
    """The store's facts a report is built from, read once."""

    findings: list[Finding]
    excepted: set[tuple[str, str]]  # (rule, resource id) under an approved exception
    last_scan: dict[str, Any] | None  # the newest *completed* scan
    hosts: list[str]
    vms: int
    now: datetime
    hook: HookFacts | None = None


def gather(store: Store, *, hook: HookFacts | None = None, now: datetime | None = None) -> Evidence:
    """Read the open findings, exceptions, newest completed scan and inventory."""
    finished = [s for s in store.recent_scans(limit=50) if s.get("finished_at") is not None]
    vms = store.list_vms()
    return Evidence(
        findings=store.open_findings(),
        excepted=ExceptionsRepo(store).active_exceptions(now=now),
        last_scan=finished[0] if finished else None,
        hosts=sorted({str(v["host"]) for v in vms}),
        vms=len(vms),
        now=now or datetime.now(UTC),
        hook=hook,
    )


@dataclass(slots=True)
class ControlResult:
    control: Control
    status: Status
    reasons: list[str]
    rules: list[str] = field(default_factory=list)
    open: int = 0
    excepted: int = 0
    worst: Severity | None = None
    examples: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        c = self.control
        return {
            "id": c.id,
            "title": c.title,
            "status": self.status,
            "reasons": self.reasons,
            "filters": list(c.filters),
            "process": c.process,
            "rules": self.rules,
            "findings": {
                "open": self.open,
                "excepted": self.excepted,
                "worst_severity": str(self.worst) if self.worst is not None else None,
                "examples": self.examples,
            },
        }


@dataclass(slots=True)
class ComplianceReport:
    framework: Framework
    policy: str | None
    evidence: Evidence
    controls: list[ControlResult]
    warnings: list[str] = field(default_factory=list)  # what limits the evidence as a whole

    def summary(self) -> dict[str, int]:
        counts = {"pass": 0, "fail": 0, "not-assessed": 0}
        for r in self.controls:
            counts[r.status] += 1
        return counts

    def scan_facts(self) -> dict[str, Any]:
        last = self.evidence.last_scan
        return {
            "last_scan_started": _iso(last["started_at"]) if last else None,
            "last_scan_finished": _iso(last["finished_at"]) if last else None,
            "uris": list(last["uris"]) if last else [],
            "hosts": self.evidence.hosts,
            "vms": self.evidence.vms,
        }

    def to_dict(self) -> dict[str, Any]:
        """The documented JSON shape (README "Compliance reports"); keys only ever added."""
        fw = self.framework
        return {
            "framework": {
                "name": fw.name,
                "title": fw.title,
                "version": fw.version,
                "url": fw.url,
                "source": fw.source,
            },
            "generated_at": _iso(self.evidence.now),
            "policy": self.policy,
            "scan": self.scan_facts(),
            "summary": self.summary(),
            "warnings": self.warnings,
            "controls": [r.to_dict() for r in self.controls],
        }


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return str(value)


def filter_types(f: Filter) -> set[str]:
    """Every filter type in a rule's tree, through ``and``/``or``/``not``."""
    found = {f.type_name}
    for child in getattr(f, "children", ()):
        found |= filter_types(child)
    return found


def evaluate(
    framework: Framework, policy: Policy | None, evidence: Evidence, *, policy_source: str | None
) -> ComplianceReport:
    """One result per control of ``framework``, in the mapping's order."""
    types = {r.name: filter_types(r.filter) for r in policy.rules} if policy else {}
    results = [_control(c, policy, types, evidence) for c in framework.controls]
    return ComplianceReport(framework, policy_source, evidence, results)


def _control(
    control: Control, policy: Policy | None, types: dict[str, set[str]], ev: Evidence
) -> ControlResult:
    parts: list[tuple[Status, str]] = []
    result = ControlResult(control, "not-assessed", [])
    if control.process == "scan":
        parts.append(_scan_part(control, ev))
    elif control.process == "gate-dormant":
        parts.append(_gate_part(policy, ev.hook))
    if control.filters:
        parts.append(_rules_part(control, policy, types, ev, result))
    statuses = {s for s, _ in parts}
    if "fail" in statuses:
        result.status = "fail"
    elif statuses == {"pass"}:
        result.status = "pass"
    result.reasons = [why for _, why in parts]
    return result


def _scan_part(control: Control, ev: Evidence) -> tuple[Status, str]:
    last = ev.last_scan
    if last is None:
        return "fail", "no completed scan is recorded in this store"
    at = last["finished_at"]
    age = (ev.now - at).total_seconds() / 86400
    seen = f"last completed scan {at:%Y-%m-%d %H:%M:%S} UTC"
    seen += f" over {len(ev.hosts)} host(s), {ev.vms} VM(s)"
    if control.max_age_days is not None and age > control.max_age_days:
        return (
            "fail",
            f"{seen}: {age:.0f} days old, the control asks for every {control.max_age_days}",
        )
    return "pass", seen


def _gate_part(policy: Policy | None, hook: HookFacts | None) -> tuple[Status, str]:
    if policy is None:
        return "not-assessed", "no policy given (-p POLICY): its gate cannot be read"
    gated = [
        kind
        for kind, conditions in (("deny", policy.gate.deny), ("hold", policy.gate.hold))
        if any("dormant" in filter_types(c) for c in conditions)
    ]
    if not gated:
        return "fail", "the policy's gate neither holds nor denies `dormant` VMs"
    rule = f"the gate {' and '.join(gated)}s dormant VMs"
    if hook is None or hook.installed is None:
        return "not-assessed", f"{rule}; whether the libvirt hook runs is unknown {_detail(hook)}"
    if not hook.installed:
        return "fail", f"{rule}, but the libvirt hook is not installed {_detail(hook)}".rstrip()
    caveat = (
        "; gate.unreachable is allow: a start is admitted while watch is down"
        if policy.gate.unreachable == "allow"
        else ""
    )
    return "pass", f"{rule} and the libvirt hook is installed{caveat}"


def _detail(hook: HookFacts | None) -> str:
    return f"({hook.detail})" if hook is not None and hook.detail else ""


def _rules_part(
    control: Control,
    policy: Policy | None,
    types: dict[str, set[str]],
    ev: Evidence,
    result: ControlResult,
) -> tuple[Status, str]:
    wanted = set(control.filters)
    if policy is None:
        return "not-assessed", "no policy given (-p POLICY): rules cannot be mapped"
    mapped: list[Rule] = [r for r in policy.rules if types[r.name] & wanted]
    result.rules = [r.name for r in mapped]
    if not mapped:
        return "not-assessed", f"no rule of the policy uses {', '.join(control.filters)}"
    if ev.last_scan is None:
        return "not-assessed", "no completed scan: the mapped rules were never evaluated"
    names = set(result.rules)
    hits = [f for f in ev.findings if f.rule in names]
    acting = [f for f in hits if (f.rule, f.id) not in ev.excepted]
    result.open = len(acting)
    result.excepted = len(hits) - len(acting)
    ranked = sorted(acting, key=lambda f: (-int(f.severity), f.rule, f.host, f.name))
    result.worst = ranked[0].severity if ranked else None
    result.examples = [
        {"rule": f.rule, "resource": f.resource, "name": f.name, "host": f.host,
         "severity": str(f.severity)}
        for f in ranked[:EXAMPLES]
    ]  # fmt: skip
    noted = f" ({result.excepted} under an approved exception)" if result.excepted else ""
    if acting:
        per_rule: dict[str, int] = {}
        for f in acting:
            per_rule[f.rule] = per_rule.get(f.rule, 0) + 1
        listed = ", ".join(f"{rule} ({n})" for rule, n in sorted(per_rule.items()))
        return "fail", f"{len(acting)} open finding(s), worst {result.worst}: {listed}{noted}"
    return "pass", f"no open finding of {', '.join(result.rules)}{noted}"

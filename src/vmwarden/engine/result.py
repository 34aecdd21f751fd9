"""What one sweep found and did, including what it could not do.

A run that fails must not look like one that succeeded: hosts that could not be reached,
actions that failed, and actions a stop request left undone are part of the result (JSON
``unreachable``, action statuses, ``interrupted``), and ``exit_code`` turns them into the
one number a script sees. The order (see ``exit_code``) is chosen so that the most urgent
thing an operator must do wins: finish an interrupted run, then fix a VM that should be
contained and is not, then reach a host nobody looked at, then act on the findings.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from vmwarden.enforce.runner import INTERRUPTED
from vmwarden.model import VM, ActionRecord, Finding, Image, Severity

# Statuses of an action that was asked for and did not take effect (wholly or in part).
FAILED_STATUSES = frozenset({"failed", "partial"})
# Exit codes of ``vmwarden scan`` (cli/main.py's docstring and the README say the same).
EXIT_OK, EXIT_ACTION_FAILED, EXIT_UNREACHABLE, EXIT_FAIL_ON = 0, 1, 2, 3
EXIT_SIGNAL_BASE = 128


@dataclass(frozen=True, slots=True)
class Unreachable:
    """A host of the sweep that could not be inventoried: nothing there was judged or done."""

    uri: str
    error: str
    hint: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"uri": self.uri, "error": self.error, "hint": self.hint}


@dataclass
class ScanResult:
    vms: list[VM]
    images: list[Image]
    findings: list[Finding]
    actions: list[ActionRecord]
    hosts: list[str]
    warnings: list[str] = field(default_factory=list)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    unreachable: list[Unreachable] = field(default_factory=list)
    interrupted_by: int | None = None  # the signal whose stop request ended enforcement
    #: host → how its disks were read: ``worker`` (its own, ``--scheduler``), ``local``,
    #: ``connection`` (the platform's remote read)
    disk_reads: dict[str, str] = field(default_factory=dict)
    #: a streamed sweep (``engine/stream.py``) keeps no lists: its counts (hosts, vms,
    #: findings, opened, resolved, worst severity) are here; the rows are in the store
    streamed: dict[str, Any] | None = None

    def worst(self) -> Severity | None:
        found = [f.severity for f in self.findings]
        if self.streamed and self.streamed.get("worst"):
            found.append(Severity.parse(self.streamed["worst"]))
        return max(found, default=None)

    def failed_actions(self) -> list[ActionRecord]:
        return [a for a in self.actions if a.status in FAILED_STATUSES]

    def not_done(self) -> list[ActionRecord]:
        return [a for a in self.actions if a.status == INTERRUPTED]

    @property
    def signal_name(self) -> str | None:
        return None if self.interrupted_by is None else signal.Signals(self.interrupted_by).name

    def exit_code(self, fail_on: Severity | None = None) -> int:
        """Interrupted (128 + signal: 130 for Ctrl-C) > an action failed (1) > a host
        unreachable (2) > ``--fail-on`` met (3) > 0: a result that is incomplete or not
        carried out must never read as "only findings"."""
        if self.interrupted_by is not None:
            return EXIT_SIGNAL_BASE + self.interrupted_by
        if self.failed_actions():
            return EXIT_ACTION_FAILED
        if self.unreachable:
            return EXIT_UNREACHABLE
        worst = self.worst()
        if fail_on is not None and worst is not None and worst >= fail_on:
            return EXIT_FAIL_ON
        return EXIT_OK

    def problems(self) -> list[str]:
        """One line per thing the run did not do: each unreachable host, each failed action
        (VM, host, why), an interruption. What a caller shows beside the result (the CLI as
        ``error:`` lines, an API scan job as warnings) so it never reads as a clean run."""
        lines = [
            f"host not scanned, nothing judged or done there: {u.error}" for u in self.unreachable
        ]
        lines += [
            f"{a.action} of VM {a.name}{f' on {a.host}' if a.host else ''} {a.status}: {a.error}"
            for a in self.failed_actions()
        ]
        if self.interrupted_by is not None:
            lines.append(
                f"interrupted by {self.signal_name}: the VM in flight was finished, "
                f"{len(self.not_done())} action(s) were not run"
            )
        return lines

    def to_dict(self) -> dict[str, Any]:
        streamed = {"streamed": self.streamed} if self.streamed is not None else {}
        return streamed | {
            "vms": [vm.to_dict() for vm in self.vms],
            "images": [img.to_dict() for img in self.images],
            "findings": [f.to_dict() for f in self.findings],
            "actions": [_action_dict(a) for a in self.actions],
            "summary": self.summary(),
            "warnings": self.warnings,
            "unreachable": [u.to_dict() for u in self.unreachable],
            "interrupted": self.signal_name,
            "disk_reads": self.disk_reads,
        }

    def summary(self) -> dict[str, Any]:
        by_sev: dict[str, int] = {}
        for f in self.findings:
            by_sev[str(f.severity)] = by_sev.get(str(f.severity), 0) + 1
        by_state: dict[str, int] = {}
        for vm in self.vms:
            by_state[vm.state.value] = by_state.get(vm.state.value, 0) + 1
        took = (
            (self.finished_at - self.started_at).total_seconds()
            if self.finished_at and self.started_at
            else None
        )
        return {
            "hosts": len(self.hosts),
            "vms": len(self.vms),
            "vms_by_state": by_state,
            "images": len(self.images),
            "findings": len(self.findings),
            "findings_by_severity": by_sev,
            "vms_with_findings": len({f.id for f in self.findings if f.resource == "vm"}),
            "actions": len(self.actions),
            "actions_failed": len(self.failed_actions()),
            "actions_not_done": len(self.not_done()),
            "hosts_unreachable": len(self.unreachable),
            "seconds": took,
        }


def _action_dict(a: ActionRecord) -> dict[str, Any]:
    d = {
        "action": a.action,
        "id": a.id,
        "name": a.name,
        "host": a.host,
        "status": a.status,
        "rule": a.rule,
        "reason": a.reason,
    }
    if a.journal_id is not None:
        d["journal_id"] = a.journal_id
    if a.error:
        d["error"] = a.error
    return d

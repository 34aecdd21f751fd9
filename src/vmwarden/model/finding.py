"""Findings (what the policy concluded) and action records (what was done about them)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import IntEnum
from typing import Any

from vmwarden.model.vm import _jsonable


class Severity(IntEnum):
    """Ordered so that ``--fail-on`` can compare."""

    INFO = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @classmethod
    def parse(cls, text: str) -> Severity:
        try:
            return cls[text.upper()]
        except KeyError:
            valid = ", ".join(s.name.lower() for s in cls)
            raise ValueError(f"unknown severity {text!r} (valid: {valid})") from None

    def __str__(self) -> str:
        return self.name.lower()


@dataclass(slots=True)
class Finding:
    rule: str
    resource: str  # vm | image | host
    id: str  # VM uuid, image path or host name
    name: str
    host: str
    severity: Severity
    evidence: dict[str, Any] = field(default_factory=dict)
    # Action names from the rule, in order: one tuple per rule shared by all its findings (a
    # list per finding was an extra object for the collector to walk, 500k at 100k VMs).
    actions: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[str, str, str]:
        """Identity across sweeps: the same rule on the same resource is the same finding."""
        return (self.rule, self.resource, self.id)

    def to_dict(self) -> dict[str, Any]:
        d = _jsonable(asdict(self))
        d["severity"] = str(self.severity)
        d.pop("actions", None)
        return d


@dataclass(slots=True)
class ActionRecord:
    """One journaled action. ``changes`` holds what was changed, so it can be undone exactly."""

    journal_id: int | None
    action: str
    id: str  # VM uuid
    name: str
    host: str
    uri: str
    status: str  # pending | done | failed | noop | released | skipped
    actor: str
    reason: str | None = None
    rule: str | None = None
    changes: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))

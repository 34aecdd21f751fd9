"""The alert record, the notifier registry and the dispatcher that never raises."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from vmwarden.errors import NotifyError
from vmwarden.registry import Registry

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Alert:
    """One thing people should hear about: a finding opened/resolved, or an action taken."""

    event: str  # finding.opened | finding.resolved | action.done | action.failed
    rule: str
    severity: str
    resource: str
    id: str
    name: str
    host: str
    evidence: dict[str, Any] = field(default_factory=dict)
    action: str | None = None
    at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def to_dict(self) -> dict[str, Any]:
        return {
            "event": self.event,
            "rule": self.rule,
            "severity": self.severity,
            "resource": self.resource,
            "id": self.id,
            "name": self.name,
            "host": self.host,
            "evidence": self.evidence,
            "action": self.action,
            "at": self.at.isoformat(),
        }

    @property
    def summary(self) -> str:
        what = f"{self.action} " if self.action else ""
        return (
            f"vmwarden {self.event}: {what}{self.rule} on {self.resource} {self.name} ({self.host})"
        )


class Notifier(Protocol):
    label: str

    def send(self, alert: Alert) -> None: ...


notifiers: Registry[type] = Registry("notifier")


@dataclass(slots=True)
class Delivery:
    receiver: str
    ok: bool
    error: str | None = None


class Dispatcher:
    """Fans an alert out to every configured receiver; failures are counted, never raised."""

    def __init__(self, specs: list[dict[str, Any]]) -> None:
        self.receivers: list[Notifier] = []
        for spec in specs:
            params = dict(spec)
            kind = params.pop("type")
            self.receivers.append(notifiers.get(kind)(**params))
        self.failures = 0

    def __call__(
        self, vm: Any, finding: Any, rule: str | None
    ) -> list[tuple[str, bool, str | None]]:
        """The enforce layer's notifier signature: one alert for a finding on a VM."""
        alert = Alert(
            event="finding.opened",
            rule=rule or "manual",
            severity=str(finding.severity) if finding else "info",
            resource=finding.resource if finding else "vm",
            id=vm.id,
            name=vm.name,
            host=vm.host,
            evidence=dict(finding.evidence) if finding else {},
        )
        return [(d.receiver, d.ok, d.error) for d in self.send(alert)]

    def send(self, alert: Alert) -> list[Delivery]:
        out = []
        for receiver in self.receivers:
            try:
                receiver.send(alert)
                out.append(Delivery(receiver.label, True))
            except (OSError, NotifyError) as exc:
                self.failures += 1
                log.warning("notifier %s failed: %s", receiver.label, exc)
                out.append(Delivery(receiver.label, False, str(exc)))
            except (
                Exception
            ) as exc:  # the notify boundary: a receiver's bug never stops enforcement
                self.failures += 1
                log.exception("notifier %s failed unexpectedly", receiver.label)
                out.append(Delivery(receiver.label, False, f"{type(exc).__name__}: {exc}"))
        return out

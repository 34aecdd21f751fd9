"""The daemon's failed alert deliveries, in the audit log as ``notify`` entries ``failed``.

In ``watch`` a rule's ``notify`` action only hands the finding to the alert state machine
(``vmwarden.notify.alerts``), whose per-receiver threads deliver later; the action's own
journal entry can only say it was handed over. A receiver that then raises (an SMTP server
refusing the recipient, a port nobody listens on) was visible only in the log and the
``/metrics`` counters, so the audit log read as if everyone had been told. Each failed
delivery is now one ``notify`` entry with status ``failed``, the receiver and the reason.

Example::

    alerts = AlertManager.from_specs(specs, on_failure=FailedAlerts(store, state.vm))
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from vmwarden.errors import VmwardenError
from vmwarden.model import VM
from vmwarden.notify import Alert

log = logging.getLogger(__name__)

NOTIFY = "notify"


class FailedAlerts:
    """``on_failure`` for :class:`AlertManager`: journals one failed delivery. Runs on a
    receiver's thread; a store that cannot take it is logged, never raised."""

    def __init__(
        self, store: Any, vm_of: Callable[[str], VM | None], actor: str = "vmwarden-watch"
    ) -> None:
        self.store, self.vm_of, self.actor = store, vm_of, actor

    def __call__(self, alert: Alert, receiver: str, reason: str) -> None:
        vm = self.vm_of(alert.id) if alert.resource == "vm" else None
        try:
            entry = self.store.journal_begin(
                NOTIFY,
                vm_id=alert.id,
                vm_name=alert.name,
                host=alert.host,
                uri=vm.uri if vm is not None else "",
                actor=self.actor,
                reason=alert.summary,
                rule=alert.rule,
                changes={"alert": alert.event, "receiver": receiver, "severity": alert.severity},
                status="failed",  # never pending: repair must not take it for work to finish
            )
            error = reason if receiver in reason else f"{receiver}: {reason}"
            self.store.journal_update(entry, status="failed", error=error)
        except VmwardenError as exc:
            log.error("could not journal the failed alert to %s: %s", receiver, exc)

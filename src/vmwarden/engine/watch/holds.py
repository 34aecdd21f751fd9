"""Which holds were announced: one ``gate.held`` alert per hold, across daemon restarts.

A hold is a quarantine journal entry made by the gate; it is announced once, the first time a
judgement on full data keeps it. The daemon used to remember that in memory only, so a new
daemon on the same store announced every hold again at its first settle. Now announcing a
hold also writes a ``notify`` event to the journal (actor ``vmwarden-gate``, ``changes``:
``{"alert": "gate.held", "hold": <journal id>}``) — the audit log then says who was told of
what, when — and a new daemon rebuilds its memory from those events, lazily: a hold's own
events are read the first time it comes up, only those since the hold began. No new table.

Finding alerts need no such memory: their before/after comes from the store's open findings
(``vmwarden.notify.alerts``), and a release is announced by the act of releasing.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from vmwarden.errors import VmwardenError
from vmwarden.model import VM
from vmwarden.store.audit import record_event

log = logging.getLogger(__name__)

HELD = "gate.held"
NOTIFY = "notify"  # the journal action of notifications (the audit log lists it)


class HoldAlerts:
    """Claims the one ``gate.held`` alert of a hold; remembered in the journal."""

    def __init__(self, store: Any, actor: str = "vmwarden-gate") -> None:
        self.store = store
        self.actor = actor
        self._announced: set[int] = set()
        self._checked: set[int] = set()  # holds whose journal events were read
        self._lock = threading.Lock()

    def announced(self, hold: int, vm_id: str) -> bool:
        """Whether this hold's alert went out (from this daemon or one before it)."""
        with self._lock:
            if hold in self._announced:
                return True
            if hold in self._checked:
                return False
        found = self._in_journal(hold, vm_id)
        with self._lock:
            self._checked.add(hold)
            if found:
                self._announced.add(hold)
            return found

    def claim(self, hold: int, vm: VM) -> bool:
        """True exactly once per hold: the caller sends its alert. Recorded before sending,
        so a crash right after loses that one alert rather than repeating it forever."""
        if self.announced(hold, vm.id):
            return False
        with self._lock:
            if hold in self._announced:
                return False
            self._announced.add(hold)
        try:
            record_event(
                self.store,
                NOTIFY,
                self.actor,
                HELD,
                {"alert": HELD, "hold": hold},
                vm_id=vm.id,
                vm_name=vm.name,
                host=vm.host,
            )
        except VmwardenError as exc:  # the alert still goes out; only its memory is lost
            log.error("could not journal the %s alert of %s: %s", HELD, vm.name, exc)
        return True

    def _in_journal(self, hold: int, vm_id: str) -> bool:
        try:
            entry = self.store.journal_get(hold)
            events = self.store.journal_entries(vm_id=vm_id, action=NOTIFY, since=entry.created_at)
        except VmwardenError as exc:
            log.warning("could not read the alerts of hold #%d: %s", hold, exc)
            return False
        return any(
            e.actor == self.actor
            and e.changes.get("alert") == HELD
            and e.changes.get("hold") == hold
            for e in events
        )

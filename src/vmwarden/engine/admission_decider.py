"""The default admission decision: the policy's ``gate`` over the domain XML and the store.

Everything comes from the XML the hook received, the store and the disk images on this host;
nothing from libvirt (libvirtd holds the domain's lock while its hook runs). Nothing is hashed
here either: a root whose digest is not known yet is queued for the ``BackgroundHasher`` and
judged *unknown* at once (the reason says the digest is pending), so one big new image never
makes the answer late, for its VM or for any other. The VM is judged
as libvirt is about to start it, i.e. still shut off, so ``dormant`` measures how long it was
off: since the stored ``state_since`` when the store last saw it shut off, else (a VM first
met now, or last seen running) since its disks were last written.

Outcomes of :func:`vmwarden.policy.admit`:
- ``deny``  → refused; the reason is what ``virsh start`` prints.
- ``hold``  → allowed, flagged: ``hold: true`` in the answer, the VM's entry in
  :attr:`Decider.held` and a call of ``on_hold``; the watch daemon quarantines it as it starts.
- ``allow`` → allowed.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vmwarden.connectors.capabilities import admission_parser, start_hook
from vmwarden.enforce.held import mark_vm_held
from vmwarden.engine.admission import Decision
from vmwarden.engine.admission_hasher import BackgroundHasher
from vmwarden.engine.admission_records import as_datetime, vm_from_record
from vmwarden.engine.content_lineage import content_lineage
from vmwarden.engine.lineage import Lineage, approved_dirs
from vmwarden.errors import VmwardenError
from vmwarden.model import VM, Estate, GuestFacts, HostInventory, Pool, State
from vmwarden.policy import Admission, Policy, admit

log = logging.getLogger(__name__)

KNOWN_TTL = 30.0  # seconds the store's VM list is reused for cross-VM conditions


@dataclass(frozen=True, slots=True)
class Hold:
    """A VM the gate allowed to start on condition that it is quarantined at once."""

    vm: VM
    admission: Admission
    at: datetime


class Decider:
    """``decide(xml) -> Decision`` from a policy, a store (optional) and the XML.

    ``store``: a :class:`vmwarden.store.Store` (or None: nothing is known, no digest cache).
    ``image_dirs``: storage directories backing files may live in (the hosts' dir pools);
    a disk's own directory is always allowed. ``known_vms``: the VMs to judge cross-VM
    conditions against (the watch daemon passes its in-memory state); default: the store's,
    re-read at most every ``known_ttl`` seconds.

    Example::

        decider = Decider(store, policy, on_hold=lambda hold: queue.put_nowait(hold.vm.id))
        AdmissionServer(DEFAULT_SOCKET, decider)
    """

    def __init__(
        self,
        store: Any,
        policy: Policy,
        *,
        uri: str | None = None,
        host: str | None = None,
        image_dirs: Iterable[str | os.PathLike[str]] = (),
        known_vms: Callable[[], Iterable[VM]] | None = None,
        known_ttl: float = KNOWN_TTL,
        on_hold: Callable[[Hold], None] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        hasher: BackgroundHasher | None = None,
    ) -> None:
        self.store = store
        self.policy = policy
        # default: the connection whose VMs this machine's start hook admits
        self.uri = uri or start_hook().LOCAL_URI
        self.host = host or socket.gethostname()
        self.image_dirs = [Path(d) for d in image_dirs]
        self.on_hold = on_hold
        self.clock = clock
        self.held: dict[str, Hold] = {}  # VM uuid → the latest hold; the daemon pops it
        self._known_vms = known_vms
        self._known_ttl = known_ttl
        self._known_cache: tuple[float, list[VM]] | None = None
        self._digests: dict[tuple[str, int, int, int, int], str] = {}
        self._lock = threading.Lock()
        # unknown roots are hashed there, never here (see the module docstring)
        self._own_hasher = hasher is None
        self.hasher = hasher or BackgroundHasher(self._remember_digest)
        self._parse = admission_parser(self.uri)  # the platform's request format, not ours

    def close(self) -> None:
        """Stop the background hasher this decider made (one passed in is the caller's)."""
        if self._own_hasher:
            self.hasher.close()

    # -- the decision ------------------------------------------------------------------------

    def __call__(self, xml: str) -> Decision:
        try:
            vm = self._parse(xml, host=self.host, uri=self.uri)
        except VmwardenError as exc:
            return self._unreadable(str(exc))
        stored = self._stored(vm.id)
        self._overlay(vm, stored)
        if self.store is not None:
            mark_vm_held(self.store, vm)  # isolated ahead: judged where its NICs were
        warnings, lineage = self._lineage(vm)
        catalog = self._catalog()
        estate = Estate(
            vms=[vm, *self._others(vm.id)],
            images=[],
            catalog=catalog,
            now=self.clock(),
            hosts=[self.host],
            catalog_paths=self._catalog_paths(),
            # full clones: only what a sweep compared and cached (no disk read here)
            content_lineage=(
                content_lineage([vm], self.store, catalog, lineage, compute=False)
                if self.store is not None
                else {}
            ),
        )
        admission = admit(self.policy, vm, estate)
        known = stored is not None
        base = {"name": vm.name, "uuid": vm.id, "known": known, "reasons": admission.reasons}
        if admission.decision == "deny":
            log.info("admission: deny %s (%s): %s", vm.name, vm.id, admission.reasons)
            return Decision("deny", explain(admission, vm), **base)
        if admission.decision == "hold":
            self._hold(vm, admission)
            return Decision("allow", explain(admission, vm), hold=True, **base)
        if warnings:
            log.info("admission: allow %s with warnings: %s", vm.name, "; ".join(warnings))
        return Decision("allow", "", **base)

    def pop_held(self, uuid: str) -> Hold | None:
        """The hold recorded for ``uuid`` (the watch daemon takes it when the VM starts)."""
        with self._lock:
            return self.held.pop(uuid, None)

    # -- pieces ------------------------------------------------------------------------------

    def _unreadable(self, why: str) -> Decision:
        """Unreadable XML cannot be judged: unknown never admits when something could deny."""
        if self.policy.gate.deny:
            return Decision("deny", f"vmwarden could not read the domain XML: {why}")
        return Decision("allow", f"vmwarden could not read the domain XML: {why}", hold=True)

    def _stored(self, uuid: str) -> dict[str, Any] | None:
        if self.store is None or not uuid:
            return None
        record = self.store.get_vm(uuid)  # by UUID only: a rogue VM may borrow a known name
        if record is None or record.get("id") != uuid or record.get("gone_at") is not None:
            return None
        return record

    def _overlay(self, vm: VM, stored: dict[str, Any] | None) -> None:
        """What only the store knows: since when the VM was off, when it was first seen."""
        if stored is None:
            return
        vm.first_seen = as_datetime(stored.get("first_seen"))
        vm.persistent = bool(stored.get("persistent", True))
        if stored.get("state") == State.SHUTOFF.value:
            vm.state_since = as_datetime(stored.get("state_since"))
        guest = stored.get("guest")
        if guest:
            vm.guest = GuestFacts.from_dict(guest)

    def _lineage(self, vm: VM) -> tuple[list[str], Lineage]:
        """Chains and root digests of the XML's disks: headers read here, digests only from
        the cache (an unknown root is queued for hashing and stays unknown for now)."""
        inv = HostInventory(
            uri=self.uri,
            host=self.host,
            vms=[vm],
            pools=[Pool(f"dir{i}", "dir", str(d), True) for i, d in enumerate(self.image_dirs)],
            local=True,  # the hook's domain is this machine's libvirtd's: its files are here
        )
        templates = approved_dirs(self.store) if self.store is not None else []
        lineage = Lineage(self._cached_digest, self._remember_digest, extra_dirs=templates)
        lineage.enrich(inv)
        return lineage.warnings, lineage

    def _cached_digest(self, path: str, st: os.stat_result) -> str | None:
        key = (path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        with self._lock:
            hit = self._digests.get(key)
        if hit is None and self.store is not None:
            hit = self.store.cached_digest(path, st)
            if hit is not None:
                with self._lock:
                    self._digests[key] = hit
        if hit is None:
            self.hasher.request(path, st)  # raises DigestPending: the root stays unknown
        return hit

    def _remember_digest(self, path: str, st: os.stat_result, digest: str) -> None:
        with self._lock:
            self._digests[(path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)] = digest
        if self.store is not None:
            self.store.remember_digest(path, st, digest)

    def _others(self, uuid: str) -> list[VM]:
        if self._known_vms is not None:
            return [v for v in self._known_vms() if v.id != uuid]
        if self.store is None:
            return []
        now = time.monotonic()
        with self._lock:
            cached = self._known_cache
        if cached is None or now - cached[0] > self._known_ttl:
            vms = []
            for record in self.store.list_vms():
                try:
                    vms.append(vm_from_record(record))
                except (KeyError, TypeError, ValueError) as exc:
                    log.warning("admission: skipping stored VM %s: %s", record.get("id"), exc)
            cached = (now, vms)
            with self._lock:
                self._known_cache = cached
        return [v for v in cached[1] if v.id != uuid]

    def _catalog(self) -> dict[str, str]:
        stored = self.store.catalog() if self.store is not None else {}
        return {**stored, **self.policy.catalog()}

    def _catalog_paths(self) -> dict[str, tuple[str, str]]:
        if self.store is None:
            return {}
        return {
            t["path"]: (t["name"], t["digest"]) for t in self.store.templates() if t.get("path")
        }

    def _hold(self, vm: VM, admission: Admission) -> None:
        hold = Hold(vm, admission, self.clock())
        with self._lock:
            self.held[vm.id] = hold
        log.info("admission: hold %s (%s): %s", vm.name, vm.id, admission.reasons)
        if self.on_hold is not None:
            try:
                self.on_hold(hold)
            except Exception:  # the daemon's callback must not turn a hold into a refusal
                log.exception("admission: on_hold callback failed for %s", vm.id)


def explain(admission: Admission, vm: VM) -> str:
    """One line an operator reads in ``virsh start``'s error: what fired, and on what."""
    verb = {"deny": "refused", "hold": "held in quarantine"}.get(admission.decision, "allowed")
    parts = []
    for reason in admission.reasons:
        evidence = {k: v for k, v in reason.items() if k != "filter"}
        detail = ", ".join(f"{k} {v}" for k, v in evidence.items() if v is not None)
        parts.append(f"{reason['filter']} ({detail})" if detail else str(reason["filter"]))
    return f"vmwarden: VM {vm.name!r} {verb} by policy gate: {'; '.join(parts)}"

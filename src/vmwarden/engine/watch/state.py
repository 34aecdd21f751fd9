"""What the daemon knows, in memory, and the hook point other code calls: ``WatchState``.

``known`` holds every watched VM as last seen (by the latest reconcile or event), ``findings``
the latest reconcile's findings, ``held`` the VMs a quarantine currently holds. The admission
service (``vmwarden.engine.admission``) answers libvirt's hook through ``WatchState.decide``,
which judges the domain XML against the policy's gate with the daemon's estate as context and
never calls libvirt. Thread-safe: the event loop, worker threads and the admission service's
threads all read it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from vmwarden.model import VM, Estate, Finding, HostInventory, Image, Pool, State
from vmwarden.policy import Policy


@dataclass
class WatchConfig:
    """Everything ``vmwarden watch`` is told on its command line."""

    uris: list[str]
    interval: float = 300.0
    enforce: bool = True
    listen: tuple[str, int] | None = None
    only: list[str] = field(default_factory=list)  # VM name patterns; empty: every VM
    hold_unknown: bool = True
    hold_unregistered: bool = True
    alert_rate: float = 1.0  # alerts per second per receiver (token bucket)
    alert_burst: int = 10
    alert_queue: int = 1000
    backoff: tuple[float, float] = (0.5, 30.0)
    keepalive: tuple[int, int] = (5, 3)
    workers: int = 8
    admission_socket: str | None = None  # serve libvirt's qemu hook on this Unix socket
    # bearer token -> may read /metrics and /state of ``listen`` (None: nobody may)
    authorize: Callable[[str], bool] | None = None


class WatchState:
    """The daemon's in-memory estate; ``decide(domain_xml)`` is the admission hook point."""

    def __init__(self, store: Any, policy: Policy, config: WatchConfig) -> None:
        self.store = store
        self.policy = policy
        self.config = config
        self.known: dict[str, VM] = {}
        self.last_state: dict[str, State] = {}
        self.findings: list[Finding] = []
        self.images: list[Image] = []
        self.pools: dict[str, list[Pool]] = {}
        self.hosts: dict[str, str] = {}  # uri → host name
        self.held: set[str] = set()
        self.swept_hosts: set[str] = set()  # hosts reconciled at least once by this daemon
        # ``--images``: backing files may lie there too (the hook's admission allows them as
        # the sweeps and the gate do)
        self.image_dirs: list[str] = []
        self._lock = threading.RLock()
        self._decider: Any | None = None
        self._hasher: Any | None = None  # one for every decider: it outlives their rebuilds

    def close(self) -> None:
        """Stop the admission's background hasher (a hash in progress stops at once)."""
        with self._lock:
            hasher, self._hasher = self._hasher, None
        if hasher is not None:
            hasher.close()

    # -- updates -----------------------------------------------------------------------

    def load_stored(self) -> None:
        """The last states the store knows, so VMs started while the daemon was down count
        as started (and meet the gate) at the first reconcile."""
        from vmwarden.engine.watch.sweeper import in_scope

        with self._lock:
            for record in self.store.list_vms():
                if in_scope(record["name"], self.config.only):
                    self.last_state[record["id"]] = State(record["state"])

    def update_vm(self, vm: VM) -> None:
        with self._lock:
            self.known[vm.id] = vm
            self.last_state[vm.id] = vm.state

    def forget(self, vm_id: str) -> None:
        with self._lock:
            self.known.pop(vm_id, None)
            self.last_state.pop(vm_id, None)
            self.held.discard(vm_id)

    def update_sweep(
        self,
        vms: list[VM],
        findings: list[Finding],
        images: list[Image],
        inventories: list[HostInventory],
    ) -> dict[str, State]:
        """Take a reconcile's view; returns the states known *before* it (by VM id)."""
        swept = {inv.host for inv in inventories}
        with self._lock:
            before = dict(self.last_state)
            for vm_id in [i for i, v in self.known.items() if v.host in swept]:
                self.known.pop(vm_id)
            for vm in vms:
                self.known[vm.id] = vm
                self.last_state[vm.id] = vm.state
            keep = [f for f in self.findings if f.host not in swept]
            self.findings = keep + list(findings)
            self.images = [i for i in self.images if i.host not in swept] + list(images)
            for inv in inventories:
                self.pools[inv.uri] = inv.pools
                self.hosts[inv.uri] = inv.host
            self._decider = None  # rebuilt with the new pools on next use
        return before

    def set_policy(self, policy: Policy) -> None:
        """A reloaded policy (SIGHUP): admission decides by it from the next request on."""
        with self._lock:
            self.policy = policy
            self._decider = None

    # -- reads -------------------------------------------------------------------------

    def vm(self, vm_id: str) -> VM | None:
        with self._lock:
            return self.known.get(vm_id)

    def others(self, vm_id: str) -> list[VM]:
        with self._lock:
            return [v for i, v in self.known.items() if i != vm_id]

    def pools_of(self, uri: str) -> list[Pool]:
        with self._lock:
            return list(self.pools.get(uri, []))

    def estate(self) -> Estate:
        with self._lock:
            catalog = {**self.store.catalog(), **self.policy.catalog()}
            return Estate(
                vms=list(self.known.values()),
                images=list(self.images),
                catalog=catalog,
                now=datetime.now(UTC),
                hosts=sorted(set(self.hosts.values())),
            )

    def counts(self) -> dict[str, Any]:
        with self._lock:
            by_state: dict[tuple[str, str], int] = {}
            for vm in self.known.values():
                key = (vm.host, str(vm.state))
                by_state[key] = by_state.get(key, 0) + 1
            by_sev: dict[str, int] = {}
            for f in self.findings:
                by_sev[str(f.severity)] = by_sev.get(str(f.severity), 0) + 1
            return {"vms": by_state, "findings": by_sev, "held": len(self.held)}

    # -- the admission hook point ------------------------------------------------------

    def decide(self, domain_xml: str) -> Any:
        """Judge a starting domain from its XML (``vmwarden.engine.admission.Decision``).

        Answers from the policy, the store and this state only; never calls libvirt (libvirt
        holds the domain's lock while its hook waits for this answer).
        """
        return self._get_decider()(domain_xml)

    def _get_decider(self) -> Any:
        from vmwarden.connectors.capabilities import start_hook
        from vmwarden.engine.admission_decider import Decider
        from vmwarden.engine.admission_hasher import BackgroundHasher

        with self._lock:
            if self._hasher is None:
                self._hasher = BackgroundHasher(self.store.remember_digest)
            if self._decider is None:
                # the watched connection this machine's start hook admits VMs of
                hook = start_hook()
                served = [u for u in self.config.uris if hook.serves(u)]
                uri = (served or self.config.uris or [hook.LOCAL_URI])[0]
                dirs = sorted(
                    {
                        p.path
                        for pools in self.pools.values()
                        for p in pools
                        if p.path and p.type == "dir"
                    }
                    | set(self.image_dirs)
                )
                self._decider = Decider(
                    self.store,
                    self.policy,
                    uri=uri,
                    host=self.hosts.get(uri),
                    image_dirs=dirs,
                    known_vms=lambda: list(self.known.values()),
                    hasher=self._hasher,
                )
            return self._decider

"""The connector contract, the registry keyed by URI scheme, and concurrent inventory.

A connector class registers the URI schemes it serves::

    @register_connector("test", "qemu", "qemu+ssh")
    class LibvirtConnector: ...

Registering a scheme twice is an error (not a silent overwrite), and ``open_connector``
on an unknown scheme lists the valid ones.
"""

from __future__ import annotations

import asyncio
import importlib
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, TypeVar, runtime_checkable

from vmwarden.errors import ConnectorError, VmwardenError
from vmwarden.model.estate import HostInventory
from vmwarden.model.events import Observed, VmEvent
from vmwarden.model.isolation import IsolationRecord, NicChange, QuarantineSpec
from vmwarden.model.ranged import RangedReader
from vmwarden.model.vm import VM, State, VmMeta

# Modules that register the built-in connectors; imported on first use, never at import time.
_BUILTIN_MODULES = (
    "vmwarden.connectors.libvirt.connection",
    "vmwarden.connectors.libvirt.events",
    "vmwarden.connectors.aws.connection",  # imports boto3 only when a connection opens
    "vmwarden.connectors.vsphere.connection",  # imports pyvmomi only when a session opens
    "vmwarden.connectors.vsphere.events",  # likewise
)


class LiveChangeUnsupportedError(ConnectorError):
    """The driver cannot change a device of a running domain (e.g. libvirt's test driver).

    Nothing was changed. The caller records "live change unsupported by this driver" and
    may retry with ``live=False`` to change only the persistent definition.
    """

    code = "live-unsupported"


class NoEventFeedError(ConnectorError):
    """The platform has no push events; the engine polls its inventory instead."""

    code = "no-event-feed"


class DiskUnavailableError(ConnectorError):
    """``open_disk``: this connection cannot serve that path's bytes (outside every storage
    pool of a remote host, gone, not a regular file); the disk is unknown with this reason."""

    code = "disk-unavailable"


class KnownDomains(Protocol):
    """What the store recorded about each domain last time, for a one-shot scan.

    ``digest(id)``: the digest of the input (see ``HostInventory.inputs``) the stored record
    was made from, or None; ``rebuild(id)``: a fresh ``VM`` as parsing that input gave it
    (before the engine's lineage, addresses and agent facts). A domain whose input digest
    equals the stored one is rebuilt rather than parsed: same bytes, same VM.
    """

    def digest(self, vm_id: str) -> str | None: ...

    def rebuild(self, vm_id: str) -> VM: ...


@runtime_checkable
class Connector(Protocol):
    """What the engine and enforcement use; one instance is one connection to one host."""

    uri: str

    @property
    def host(self) -> str: ...

    def inventory(self, known: KnownDomains | None = None) -> HostInventory: ...

    def lookup(self, vm_id_or_name: str) -> VM: ...

    def observe(self, vm_id: str) -> Observed: ...

    def domain_state(self, vm_id: str) -> State: ...

    # -- isolation (quarantine): one opaque, JSON-serialisable record per NIC ----------
    # The caller journals the records before anything changes and after every step
    # (``progress(step)``), so a crash is repaired by calling the same method again with
    # the journaled records; every method is idempotent.

    def network_exists(self, name: str) -> bool: ...

    def quarantine_target_problem(self, spec: QuarantineSpec) -> str | None:
        """Why isolating a VM of this host with ``spec`` would fail now (the platform's
        field of the spec is empty, or names a network / portgroup that is not there),
        or None. Asked before anything changes; a target the connector creates when
        absent (EC2's security group) is not a problem."""
        ...

    def isolation_records(self, vm_id: str) -> list[IsolationRecord]: ...

    def isolate(
        self,
        vm_id: str,
        records: list[IsolationRecord],
        spec: QuarantineSpec,
        *,
        progress: Callable[[str], None],
        on_live: Callable[[], None] | None = None,
    ) -> list[str]: ...

    def is_isolated(
        self, vm_id: str, records: list[IsolationRecord], spec: QuarantineSpec
    ) -> bool: ...

    def changes_since(
        self, vm_id: str, records: list[IsolationRecord], spec: QuarantineSpec
    ) -> list[NicChange]: ...

    def restore_plan(
        self,
        vm_id: str,
        records: list[IsolationRecord],
        spec: QuarantineSpec,
        changes: list[NicChange],
        *,
        keep_changes: bool,
    ) -> list[IsolationRecord]: ...

    def restore(
        self,
        vm_id: str,
        records: list[IsolationRecord],
        plan: list[IsolationRecord],
        *,
        progress: Callable[[str], None],
    ) -> list[str]: ...

    def pause(self, vm_id: str) -> None: ...

    def resume(self, vm_id: str) -> None: ...

    def shutdown(self, vm_id: str) -> None: ...

    def destroy(self, vm_id: str) -> None: ...

    def snapshot(self, vm_id: str, name: str, description: str) -> str: ...

    def get_metadata(self, vm_id: str) -> VmMeta: ...

    # -- disks: one layer (a file on the VM's host) read by ranges, agentlessly ---------
    # ``path`` is a disk or backing layer as the inventory names it. The reader's
    # ``identity()`` carries at least host, path, size and mtime_ns (the caches' key);
    # an optional ``digest() -> (sha256:hex, unchanged)`` streams the whole layer more
    # cheaply than ranged reads. Raises ``DiskUnavailableError`` with the reason.

    def open_disk(self, path: str) -> RangedReader: ...

    def set_metadata(self, vm_id: str, meta: VmMeta) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> Connector: ...

    def __exit__(self, *exc: object) -> None: ...


ConnectorFactory = Callable[[str], Connector]
_F = TypeVar("_F", bound=ConnectorFactory)

_registry: dict[str, ConnectorFactory] = {}
_registry_lock = threading.Lock()


def register_connector(*schemes: str) -> Callable[[_F], _F]:
    """Class decorator: serve ``schemes`` (``"qemu+ssh"``, not ``"qemu+ssh://"``) with it."""
    if not schemes:
        raise ValueError("register_connector needs at least one URI scheme")

    def decorate(factory: _F) -> _F:
        with _registry_lock:
            taken = [s for s in schemes if s in _registry]
            if taken:
                owners = ", ".join(f"{s!r} by {_name(_registry[s])}" for s in taken)
                raise ValueError(f"URI scheme already registered: {owners}")
            for scheme in schemes:
                _registry[scheme] = factory
        return factory

    return decorate


_T = TypeVar("_T")


def claim_schemes(
    table: dict[str, _T], schemes: tuple[str, ...], entry: _T, what: str, lock: threading.Lock
) -> None:
    """Put ``entry`` under every scheme in ``table``, all or none: a scheme already taken is
    an error naming ``what``. The one check behind each per-scheme registry (event feeds,
    admission parsers, isolation record readers)."""
    with lock:
        taken = [s for s in schemes if s in table]
        if taken:
            raise ValueError(f"{what} already registered for {taken}")
        for scheme in schemes:
            table[scheme] = entry


def _name(factory: ConnectorFactory) -> str:
    return f"{factory.__module__}.{getattr(factory, '__qualname__', repr(factory))}"


def _load_builtins() -> None:
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)


def registered_schemes() -> list[str]:
    """Every URI scheme a connector serves, sorted."""
    _load_builtins()
    with _registry_lock:
        return sorted(_registry)


def uri_scheme(uri: str) -> str:
    """``qemu+ssh://h/system`` → ``qemu+ssh``."""
    scheme, sep, _ = uri.partition(":")
    if not sep or not scheme:
        raise ConnectorError(
            f"not a connection URI: {uri!r}",
            hint="use a libvirt URI such as qemu:///system or test:///path/fleet.xml",
        )
    return scheme.lower()


def connector_factory(uri: str) -> ConnectorFactory:
    """The connector class registered for the URI's scheme, not opened: what a platform
    declares about itself (e.g. ``quarantine_target``) is read from it without a connection.
    Raises ``ConnectorError`` for a scheme no connector serves."""
    _load_builtins()
    scheme = uri_scheme(uri)
    with _registry_lock:
        factory = _registry.get(scheme)
    if factory is None:
        valid = ", ".join(registered_schemes())
        raise ConnectorError(
            f"no connector for URI scheme {scheme!r} in {uri!r}",
            hint=f"valid schemes: {valid}",
        )
    return factory


def open_connector(uri: str) -> Connector:
    """Open the connector registered for the URI's scheme (raises ``UnreachableError``)."""
    return connector_factory(uri)(uri)


InventoryResult = HostInventory | VmwardenError


def _inventory_one(uri: str, known: KnownDomains | None = None) -> InventoryResult:
    # The boundary of the connector layer for a sweep: one host failing, for whatever reason,
    # is recorded as that host's result and never stops the other hosts.
    try:
        with open_connector(uri) as conn:
            return conn.inventory(known) if known is not None else conn.inventory()
    except VmwardenError as exc:
        return exc
    except Exception as exc:  # see above: recorded as data, not swallowed
        return ConnectorError(f"inventory of {uri} failed: {type(exc).__name__}: {exc}")


def inventory_all(
    uris: Iterable[str],
    on_done: Callable[[str, InventoryResult], None] | None = None,
    *,
    max_workers: int | None = None,
    known: KnownDomains | None = None,
) -> list[InventoryResult]:
    """Inventory every URI concurrently (one thread and one connection per URI).

    Returns one result per URI, in the order given: a ``HostInventory``, or the
    ``VmwardenError`` that host failed with. ``on_done(uri, result)`` is called from the
    worker thread as each host finishes, e.g. to update a progress display. ``known``:
    the store's digests of the last recorded inputs (see ``KnownDomains``).
    """
    uri_list = list(uris)
    if not uri_list:
        return []

    def run(uri: str) -> InventoryResult:
        result = _inventory_one(uri, known)
        if on_done is not None:
            on_done(uri, result)
        return result

    workers = max_workers or min(32, len(uri_list))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="inventory") as pool:
        return list(pool.map(run, uri_list))


class EventFeed(Protocol):
    """One host's event subscription, as ``watch`` keeps it up (``engine.watch.hosts``).

    ``attach(loop)``: dispatch the platform's events on ``loop`` (called before ``open``);
    ``open()`` connects and subscribes (blocking; raises ``UnreachableError``) and returns the
    connector the daemon acts through (one connection carries events and actions);
    ``alive()`` is a cheap local check; ``close()`` is safe on a dead connection. Each event
    reaches ``on_event`` as a neutral ``VmEvent``; a lost connection calls ``on_close(why)``.
    """

    uri: str

    @property
    def connector(self) -> Connector | None: ...

    @property
    def host(self) -> str | None: ...

    def attach(self, loop: asyncio.AbstractEventLoop) -> None: ...

    def open(self) -> Connector: ...

    def alive(self) -> bool: ...

    def close(self) -> None: ...


EventFeedFactory = Callable[..., EventFeed]
_feeds: dict[str, EventFeedFactory] = {}


def register_event_feed(*schemes: str) -> Callable[[EventFeedFactory], EventFeedFactory]:
    """Class decorator: the event feed of ``schemes`` (a duplicate scheme is an error)."""

    def decorate(factory: EventFeedFactory) -> EventFeedFactory:
        claim_schemes(_feeds, schemes, factory, "event feed", _registry_lock)
        return factory

    return decorate


def open_event_feed(
    uri: str,
    *,
    on_event: Callable[[VmEvent], None],
    on_close: Callable[[str], None],
    keepalive: tuple[int, int] = (5, 3),
) -> EventFeed:
    """The event feed for ``uri``'s scheme (not yet opened); ``NoEventFeedError`` when the
    platform has none (the engine then drives a poll: ``engine.watch.poll``)."""
    _load_builtins()
    scheme = uri_scheme(uri)
    with _registry_lock:
        factory = _feeds.get(scheme)
        valid = ", ".join(sorted(_feeds))
    if factory is None:
        raise NoEventFeedError(
            f"no event feed for URI scheme {scheme!r} in {uri!r}",
            hint=f"schemes with push events: {valid}; others are polled",
        )
    return factory(uri, on_event=on_event, on_close=on_close, keepalive=keepalive)

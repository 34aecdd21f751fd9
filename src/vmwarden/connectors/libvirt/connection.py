"""``LibvirtConnector``: one libvirt connection — inventory and the operations actions need.

Every libvirt error leaves this module as a ``ConnectorError`` carrying libvirt's message
(``DomainGoneError`` when the domain no longer exists, ``UnreachableError`` when the URI
cannot be opened after retries); a ``libvirt.libvirtError`` never escapes.

What libvirt's **test driver** (``test:///…``, libvirt 9.0) supports, checked by the tests:

- ``updateDeviceFlags`` / ``attachDeviceFlags``: **not supported**, neither live nor config
  (``VIR_ERR_NO_SUPPORT``). ``set_interface`` therefore changes the persistent definition
  by redefining the domain (``defineXML`` of the inactive XML with the NIC replaced by
  MAC), and raises ``LiveChangeUnsupportedError`` (``code = "live-unsupported"``, nothing
  changed) when a live change is asked for. Real QEMU supports both.
- ``setMetadata`` / ``metadata``: supported, live and config.
- ``interfaceAddresses``: answers every source (lease, agent, ARP) with made-up addresses
  from the NIC's network's ``<ip>``; errors when that network does not exist, and
  **segfaults the process** when it has no ``<ip>`` (so the inventory never asks then).
- State in the custom-file format comes from ``<test:runstate>N</test:runstate>`` (a
  ``virDomainState`` number: 1 running, 3 paused, 5 shut off) and ``<test:transient/>``, in
  namespace ``http://libvirt.org/schemas/domain/test/1.0`` (*with* ``/1.0``: other URIs
  are silently ignored). A transient domain cannot be shut off; a domain without
  ``<test:runstate>`` is running. Pools in the file are always active; volumes never
  report ``<timestamps>``.
- ``suspend``/``resume``/``shutdown``/``destroy``/``snapshotCreateXML``: supported;
  ``shutdownFlags(ACPI_POWER_BTN)`` is rejected, so ``shutdown`` falls back to the default.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid as uuidlib
from types import TracebackType
from typing import NoReturn

import libvirt
from lxml import etree

from vmwarden.connectors import locality as known_locality
from vmwarden.connectors.base import (
    KnownDomains,
    LiveChangeUnsupportedError,
    register_connector,
)
from vmwarden.connectors.libvirt.disks import LocalFileReader
from vmwarden.connectors.libvirt.domxml import META_KEY, meta_from_xml, meta_to_xml
from vmwarden.connectors.libvirt.inventory import (
    ParseCache,
    domain_to_vm,
    host_of,
    message_of,
    read_inventory,
    state_of,
    unsafe_address_networks,
)
from vmwarden.connectors.libvirt.isolation import LibvirtIsolation
from vmwarden.connectors.libvirt.locality import Locality, decide
from vmwarden.connectors.libvirt.nicstate import NicSnapshot
from vmwarden.connectors.libvirt.nicxml import (
    iface_mac,
    interface_by_mac,
    interface_macs,
    replace_interface,
)
from vmwarden.connectors.libvirt.observe import observe
from vmwarden.connectors.libvirt.schemes import SCHEMES
from vmwarden.connectors.libvirt.volumes import RemoteVolumes
from vmwarden.errors import ConnectorError, DomainGoneError, UnreachableError
from vmwarden.model.estate import HostInventory
from vmwarden.model.events import Observed
from vmwarden.model.isolation import QuarantineSpec, QuarantineTarget
from vmwarden.model.ranged import RangedReader
from vmwarden.model.vm import VM, VM_XMLNS, State, VmMeta

log = logging.getLogger(__name__)

_UNSUPPORTED = frozenset({libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_OPERATION_UNSUPPORTED})
_FLAGS_REJECTED = frozenset(
    {libvirt.VIR_ERR_INVALID_ARG, libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED}
)
_UNREACHABLE_HINT = (
    "check that libvirtd is running on that host and that the URI is right "
    "(try: virsh -c URI list --all)"
)
_TEST_HINT = "check that the file exists and is a libvirt test-driver <node> XML file"


def _hint(uri: str) -> str:
    return _TEST_HINT if uri.startswith("test:") else _UNREACHABLE_HINT


_handler_lock = threading.Lock()
_handler_installed = False


def _quiet_libvirt() -> None:
    """libvirt prints every error to stderr by default; we report them ourselves."""
    global _handler_installed  # noqa: PLW0603 - process-wide libvirt setting, set once
    with _handler_lock:
        if not _handler_installed:
            libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
            _handler_installed = True


@register_connector(*SCHEMES)
class LibvirtConnector(LibvirtIsolation):
    """A libvirt connection. Not thread-safe: use one instance per thread."""

    #: NICs move onto ``quarantine.network``, which must be defined and active on the host.
    quarantine_target = QuarantineTarget(
        "network",
        "quarantine.network",
        "network",
        must_be_active=True,
        start_hint="virsh net-start",
    )

    def __init__(self, uri: str, *, retries: int = 3, backoff: float = 0.5) -> None:
        _quiet_libvirt()
        self.uri = uri
        self._conn: libvirt.virConnect | None = self._open(uri, max(1, retries), backoff)
        try:
            self._host = host_of(uri, self._conn)
        except libvirt.libvirtError as exc:
            self.close()
            raise UnreachableError(
                f"cannot connect to {uri}: {message_of(exc)}", hint=_hint(uri)
            ) from None
        self.locality: Locality = decide(uri, self._conn)
        self._volumes: RemoteVolumes | None = None
        known_locality.remember(uri, self.locality.local)

    @staticmethod
    def _open(uri: str, retries: int, backoff: float) -> libvirt.virConnect:
        message = "unknown error"
        for attempt in range(retries):
            try:
                return libvirt.open(uri)
            except libvirt.libvirtError as exc:
                message = message_of(exc)
                log.debug("connect %s attempt %d failed: %s", uri, attempt + 1, message)
            if attempt + 1 < retries:
                time.sleep(backoff * 2**attempt)
        raise UnreachableError(f"cannot connect to {uri}: {message}", hint=_hint(uri))

    # --- lifecycle ---------------------------------------------------------------------

    @property
    def host(self) -> str:
        return self._host

    @property
    def conn(self) -> libvirt.virConnect:
        if self._conn is None:
            raise ConnectorError(f"connection to {self.uri} is closed")
        return self._conn

    def network_exists(self, name: str) -> bool:
        """Whether a libvirt network of that name is defined on this host."""
        try:
            self.conn.networkLookupByName(name)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_NETWORK:
                return False
            raise ConnectorError(
                f"{self.uri}: cannot look up network {name!r}: {message_of(exc)}"
            ) from exc
        return True

    def quarantine_target_problem(self, spec: QuarantineSpec) -> str | None:
        """libvirt isolates onto ``quarantine.network``: it must be named and defined."""
        if not spec.network:
            return f"the policy names no quarantine network for libvirt host {self.host}"
        if not self.network_exists(spec.network):
            return f"quarantine network {spec.network!r} does not exist on {self.host}"
        return None

    def open_disk(self, path: str) -> RangedReader:
        """A layer's bytes: a local file for a daemon on this machine, else the volume
        through this connection (``DiskUnavailableError`` outside the host's pools)."""
        if self.locality.local:
            return LocalFileReader(path, self.host)
        if self._volumes is None:
            self._volumes = RemoteVolumes(self.conn, self.host)
        return self._volumes.open(path)

    def close(self) -> None:
        self._volumes = None
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except libvirt.libvirtError as exc:  # closing a dead connection: nothing to do
                log.debug("close %s: %s", self.uri, message_of(exc))

    def __enter__(self) -> LibvirtConnector:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LibvirtConnector({self.uri!r})"

    # --- errors ------------------------------------------------------------------------

    def _fail(self, exc: libvirt.libvirtError, action: str, vm: str) -> NoReturn:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            raise DomainGoneError(
                f"VM {vm} no longer exists on {self.host}",
                hint="it was undefined or destroyed since the inventory; run a new scan",
            ) from None
        raise ConnectorError(
            f"{action} of VM {vm} on {self.host} failed: {message_of(exc)}"
        ) from None

    def _dom(self, vm_id: str) -> libvirt.virDomain:
        """The domain with this UUID (or, when it is not a UUID, this name)."""
        try:
            uuidlib.UUID(vm_id)
        except ValueError:
            by_uuid = False
        else:
            by_uuid = True
        try:
            if by_uuid:
                return self.conn.lookupByUUIDString(vm_id)
            return self.conn.lookupByName(vm_id)
        except libvirt.libvirtError as exc:
            self._fail(exc, "lookup", vm_id)

    # --- inventory ---------------------------------------------------------------------

    _parse_cache: ParseCache | None = None
    _parse_cache_lock = threading.Lock()

    @property
    def parse_cache(self) -> ParseCache:
        """This connection's ``ParseCache`` (it pays off from the third inventory on)."""
        if self._parse_cache is None:
            with self._parse_cache_lock:
                if self._parse_cache is None:
                    self._parse_cache = ParseCache()
        return self._parse_cache

    def inventory(self, known: KnownDomains | None = None) -> HostInventory:
        """Every domain (any state, persistent or transient), pool, volume and network.

        ``known``: the store's record of each domain's last input; an unchanged domain is
        rebuilt from it instead of parsed (a one-shot scan has no parse cache to hit).
        ``local``/``daemon`` come from ``locality``: whether the daemon runs on this machine
        (so its disk paths are this machine's files) and which daemon it is.
        """
        inv = read_inventory(self.conn, self.uri, self.host, self.parse_cache, known)
        inv.local, inv.daemon = self.locality.local, self.locality.key
        return inv

    # --- one domain ------------------------------------------------------------------

    def lookup(self, vm_id_or_name: str) -> VM:
        """One domain by UUID or name, parsed as in ``inventory``."""
        dom = self._dom(vm_id_or_name)
        try:
            unsafe = unsafe_address_networks(self.conn, self.uri)
            state, persistent = state_of(dom.state()[0]), bool(dom.isPersistent())
            return domain_to_vm(dom, state, persistent, self.host, self.uri, unsafe)
        except libvirt.libvirtError as exc:
            self._fail(exc, "read", vm_id_or_name)

    def observe(self, vm_id: str) -> Observed:
        """The watch daemon's fast read of one domain (``observe.observe``)."""
        return observe(self.conn, self.uri, self.host, vm_id)

    def domain_state(self, vm_id: str) -> State:
        dom = self._dom(vm_id)
        try:
            return state_of(dom.state()[0])
        except libvirt.libvirtError as exc:
            self._fail(exc, "read state", vm_id)

    def nic_snapshot(self, vm_id: str) -> list[NicSnapshot]:
        """Each NIC's ``<interface>`` as it is now, live and persistent, to restore later.

        A MAC shared by several NICs of one domain is listed once (its first NIC).
        """
        dom = self._dom(vm_id)
        try:
            live = dom.XMLDesc(0) if dom.isActive() else None
            config = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE) if dom.isPersistent() else None
        except libvirt.libvirtError as exc:
            self._fail(exc, "read NICs", vm_id)
        macs = dict.fromkeys(
            (interface_macs(live) if live else []) + (interface_macs(config) if config else [])
        )
        return [
            NicSnapshot(
                mac=mac,
                live_xml=interface_by_mac(live, mac) if live else None,
                config_xml=interface_by_mac(config, mac) if config else None,
            )
            for mac in macs
        ]

    def set_interface(self, vm_id: str, iface_xml: str, *, live: bool, config: bool) -> None:
        """Replace the NIC with ``iface_xml``'s MAC, in the running VM and/or its definition.

        Raises ``LiveChangeUnsupportedError`` (nothing changed) when ``live`` is asked of a
        driver that cannot update devices; when only ``config`` is asked and the driver cannot
        update devices, the domain is redefined with the NIC replaced.
        """
        if not (live or config):
            raise ConnectorError("set_interface: neither live nor config was asked for")
        mac = iface_mac(iface_xml)
        dom = self._dom(vm_id)
        flags = (libvirt.VIR_DOMAIN_AFFECT_LIVE if live else 0) | (
            libvirt.VIR_DOMAIN_AFFECT_CONFIG if config else 0
        )
        try:
            dom.updateDeviceFlags(iface_xml, flags)
            return
        except libvirt.libvirtError as exc:
            if exc.get_error_code() not in _UNSUPPORTED:
                self._fail(exc, f"update of NIC {mac}", vm_id)
            reason = message_of(exc)
        if live:
            raise LiveChangeUnsupportedError(
                f"live change unsupported by this driver ({self.uri}): {reason}",
                hint="nothing was changed; retry with live=False to change the definition "
                "only (it takes effect when the VM next starts)",
            )
        self._redefine_interface(dom, vm_id, mac, iface_xml)

    def _redefine_interface(
        self, dom: libvirt.virDomain, vm_id: str, mac: str, iface_xml: str
    ) -> None:
        try:
            if not dom.isPersistent():
                raise ConnectorError(f"VM {vm_id} is transient: it has no definition to change")
            # SECURE keeps graphics passwords, which a plain dump would drop on redefinition.
            flags = libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE
            xml = replace_interface(dom.XMLDesc(flags), mac, iface_xml)
            self.conn.defineXML(xml)
        except libvirt.libvirtError as exc:
            self._fail(exc, f"redefinition with NIC {mac}", vm_id)

    def _run(self, vm_id: str, action: str, op: str) -> None:
        dom = self._dom(vm_id)
        try:
            getattr(dom, op)()
        except libvirt.libvirtError as exc:
            self._fail(exc, action, vm_id)

    def pause(self, vm_id: str) -> None:
        self._run(vm_id, "pause", "suspend")

    def resume(self, vm_id: str) -> None:
        self._run(vm_id, "resume", "resume")

    def destroy(self, vm_id: str) -> None:
        """Hard power-off (the domain stays defined if persistent)."""
        self._run(vm_id, "destroy", "destroy")

    def shutdown(self, vm_id: str) -> None:
        """Graceful shutdown by ACPI power button; returns before the guest has stopped."""
        dom = self._dom(vm_id)
        try:
            try:
                dom.shutdownFlags(libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() not in _FLAGS_REJECTED:
                    raise
                dom.shutdown()  # driver without shutdown modes: its default is graceful
        except libvirt.libvirtError as exc:
            self._fail(exc, "shutdown", vm_id)

    def snapshot(self, vm_id: str, name: str, description: str) -> str:
        """Create a snapshot; returns its name as libvirt recorded it."""
        root = etree.Element("domainsnapshot")
        etree.SubElement(root, "name").text = name
        etree.SubElement(root, "description").text = description
        dom = self._dom(vm_id)
        try:
            snap = dom.snapshotCreateXML(etree.tostring(root, encoding="unicode"), 0)
            return snap.getName()
        except libvirt.libvirtError as exc:
            self._fail(exc, f"snapshot {name!r}", vm_id)

    def get_metadata(self, vm_id: str) -> VmMeta:
        """The ``<vmwarden:vm>`` metadata (of the running VM if active, else the definition)."""
        dom = self._dom(vm_id)
        try:
            xml = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, VM_XMLNS, 0)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN_METADATA:
                return VmMeta()
            self._fail(exc, "metadata read", vm_id)
        return meta_from_xml(xml)

    def set_metadata(self, vm_id: str, meta: VmMeta) -> None:
        """Write the metadata where it will persist: live if active, config if persistent."""
        dom = self._dom(vm_id)
        try:
            flags = (libvirt.VIR_DOMAIN_AFFECT_LIVE if dom.isActive() else 0) | (
                libvirt.VIR_DOMAIN_AFFECT_CONFIG if dom.isPersistent() else 0
            )
            dom.setMetadata(
                libvirt.VIR_DOMAIN_METADATA_ELEMENT, meta_to_xml(meta), META_KEY, VM_XMLNS, flags
            )
        except libvirt.libvirtError as exc:
            self._fail(exc, "metadata write", vm_id)

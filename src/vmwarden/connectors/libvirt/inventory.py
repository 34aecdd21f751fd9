"""Read everything one libvirt connection holds: domains, storage pools, volumes, networks.

Bulk calls where libvirt has them (``getAllDomainStats`` for every domain's state,
``listAllDomains(TRANSIENT)`` for persistence), then one ``XMLDesc`` per object, parsed by the
pure readers in ``domxml`` and ``hostxml``. An object that disappears or cannot be read
mid-sweep becomes a warning in ``HostInventory.warnings``, never a failed sweep.

A long-lived connection (``watch``) re-reads the same domains at every reconcile: a
``ParseCache`` then skips parsing a domain whose XML, state and persistence are unchanged.
A one-shot ``scan`` has no earlier sweep in its process; it hands the cache the store's
digests (``KnownDomains``) instead, and a domain whose input digest matches the stored one
is rebuilt from the stored record rather than parsed.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import libvirt

from vmwarden.connectors.base import KnownDomains
from vmwarden.connectors.libvirt import agentxml, domxml
from vmwarden.connectors.libvirt.agent import read_agent
from vmwarden.connectors.libvirt.domxml import parse_domain, parse_xml
from vmwarden.connectors.libvirt.hostxml import parse_network, parse_pool, parse_volume
from vmwarden.errors import ConnectorError
from vmwarden.model import vm as vm_model
from vmwarden.model.estate import HostInventory, Network, Pool
from vmwarden.model.vm import VM, State

_STATES: dict[int, State] = {
    libvirt.VIR_DOMAIN_NOSTATE: State.NOSTATE,
    libvirt.VIR_DOMAIN_RUNNING: State.RUNNING,
    libvirt.VIR_DOMAIN_BLOCKED: State.BLOCKED,
    libvirt.VIR_DOMAIN_PAUSED: State.PAUSED,
    libvirt.VIR_DOMAIN_SHUTDOWN: State.SHUTDOWN,
    libvirt.VIR_DOMAIN_SHUTOFF: State.SHUTOFF,
    libvirt.VIR_DOMAIN_CRASHED: State.CRASHED,
    libvirt.VIR_DOMAIN_PMSUSPENDED: State.PMSUSPENDED,
}
# Domains with a guest network stack worth asking for addresses.
_LIVE_STATES = frozenset({State.RUNNING, State.PAUSED, State.BLOCKED})


def message_of(exc: libvirt.libvirtError) -> str:
    """libvirt's own message for an error (what operators see in virsh)."""
    return (exc.get_error_message() or str(exc)).strip()


def state_of(code: int) -> State:
    """A ``virDomainState`` number as a ``State`` (unknown numbers: ``nostate``)."""
    return _STATES.get(code, State.NOSTATE)


def host_of(uri: str, conn: libvirt.virConnect) -> str:
    """The host name vmwarden reports: a test-driver file's stem, else the hypervisor's name."""
    parsed = urlparse(uri)
    if parsed.scheme == "test" and parsed.path:
        return Path(parsed.path).stem or "default"
    return conn.getHostname()


_PLAIN = frozenset((str, int, float, bool, type(None), State))
_SLOTS: dict[type, tuple[str, ...]] = {}


def _clone(value: Any) -> Any:
    """A copy of a model object sharing nothing mutable with it (the engine fills layers'
    digests, NICs' addresses and the VM's times in place). Several times cheaper than
    ``copy.deepcopy``, which is as slow as parsing the XML again."""
    kind = type(value)
    if kind in _PLAIN:
        return value
    names = _SLOTS.get(kind)
    if names is None and dataclasses.is_dataclass(value) and not isinstance(value, type):
        names = _SLOTS[kind] = tuple(f.name for f in dataclasses.fields(value))
    if names is not None:
        out = object.__new__(kind)
        for name in names:
            item = getattr(value, name)
            object.__setattr__(out, name, item if type(item) in _PLAIN else _clone(item))
        return out
    if kind is list:
        return [item if type(item) in _PLAIN else _clone(item) for item in value]
    if kind is dict:
        return {k: item if type(item) in _PLAIN else _clone(item) for k, item in value.items()}
    return value  # immutable leaves: datetimes, tuples of plain values


class ParseCache:
    """Domain UUID → the VM parsed from its last XML, for connections that sweep repeatedly.

    A domain is parsed as usual the first time its XML (with state and persistence) is
    seen; when the next sweep finds the very same XML, the parsed VM is kept, and from then
    on each sweep gets a fresh copy of it instead of a parse (a copy costs a quarter to a
    fifth of a parse).
    So a one-shot ``scan`` keeps no parsed VMs, and a ``watch`` reconcile of an unchanged
    estate parses nothing. Entries of domains not seen by the last sweep are dropped.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()  # held by the one sweep using the cache
        self._entries: dict[str, tuple[str, VM | None]] = {}
        self._seen: set[str] = set()
        self.hits = 0
        self.parsed = 0
        self.reused = 0  # rebuilt from ``known`` (the store) rather than parsed
        self.known: KnownDomains | None = None
        self.digests: dict[str, str] = {}  # this sweep's input digest of each domain

    def vm(self, dom: libvirt.virDomain, state: State, persistent: bool, host: str, uri: str) -> VM:
        xml = dom.XMLDesc(0)
        key = dom.UUIDString()
        digest = input_digest(xml, state, persistent, host, uri)
        self._seen.add(key)
        self.digests[key] = digest
        entry = self._entries.get(key)
        if entry is not None and entry[0] == digest:
            if entry[1] is not None:
                self.hits += 1
                return _clone(entry[1])
            vm = parse_domain(xml, host=host, uri=uri, state=state, persistent=persistent)
            self._entries[key] = (digest, _clone(vm))
        elif (rebuilt := self._rebuild(key, digest)) is not None:
            self._entries[key] = (digest, None)
            return rebuilt
        else:
            vm = parse_domain(xml, host=host, uri=uri, state=state, persistent=persistent)
            self._entries[key] = (digest, None)
        self.parsed += 1
        return vm

    def _rebuild(self, key: str, digest: str) -> VM | None:
        """The VM the store recorded for this very input, or None (then parse)."""
        if self.known is None or self.known.digest(key) != digest:
            return None
        try:
            vm = self.known.rebuild(key)
        except (KeyError, TypeError, ValueError):  # a record that does not fit: parse
            return None
        self.reused += 1
        return vm

    def begin(self, known: KnownDomains | None = None) -> None:
        """A sweep starts: forget which domains the previous one saw (and their digests)."""
        self._seen = set()
        self.digests = {}
        self.known = known

    def end(self) -> None:
        """A sweep listed every domain: drop the entries of domains it did not see."""
        for key in self._entries.keys() - self._seen:
            del self._entries[key]
        self.known = None

    def __len__(self) -> int:
        return len(self._entries)


def input_digest(xml: str, state: State, persistent: bool, host: str, uri: str) -> str:
    """Digest of everything ``parse_domain`` reads: equal digests give equal VMs.

    It starts with ``parser_stamp()``, so a stored digest stops matching once the parser
    (or the VM model) changed and its records would be parsed differently.
    """
    head = f"{parser_stamp()}|{state.value}|{persistent}|{host}|{uri}|".encode()
    return hashlib.blake2b(head + xml.encode(), digest_size=16).hexdigest()


@functools.cache
def parser_stamp() -> str:
    """A digest of the source of the domain parser and the VM model (read once)."""
    h = hashlib.blake2b(digest_size=8)
    for module in (domxml, agentxml, vm_model):
        try:
            h.update(Path(module.__file__ or "").read_bytes())
        except OSError:
            h.update(module.__name__.encode())  # no source to read: the name alone
    return h.hexdigest()


def read_inventory(
    conn: libvirt.virConnect,
    uri: str,
    host: str,
    cache: ParseCache | None = None,
    known: KnownDomains | None = None,
) -> HostInventory:
    """Every domain (any state, persistent or transient), pool, volume and network.

    ``cache``: the connection's ``ParseCache``; a sweep that finds it in use by another
    thread's sweep (a shared connection) parses everything rather than wait (and reports
    no input digests). ``known``: see ``KnownDomains``.
    """
    inv = HostInventory(uri=uri, host=host)
    inv.networks = _networks(conn, inv.warnings)
    unsafe = unsafe_address_networks(conn, uri)
    pairs, transient = list_domains(conn, uri)
    if cache is not None and cache.lock.acquire(blocking=False):
        try:
            cache.begin(known)
            reused = cache.reused
            inv.vms = read_domains(pairs, transient, host, uri, inv.warnings, unsafe, cache)
            inv.inputs, inv.reused = cache.digests, cache.reused - reused
            cache.end()
        finally:
            cache.lock.release()
    else:
        inv.vms = read_domains(pairs, transient, host, uri, inv.warnings, unsafe)
    inv.pools = _pools(conn, inv.warnings)
    return inv


def unsafe_address_networks(conn: libvirt.virConnect, uri: str) -> frozenset[str]:
    """Networks whose NICs must not be asked for addresses: libvirt 9.0's test driver
    dereferences the network's first ``<ip>`` in ``interfaceAddresses`` and crashes the
    whole process (SIGSEGV) when the network has none. Real drivers: no such network."""
    if not uri.startswith("test:"):
        return frozenset()
    unsafe = set()
    try:
        for net in conn.listAllNetworks(0):
            if parse_xml(net.XMLDesc(0), "network XML").find("ip") is None:
                unsafe.add(net.name())
    except libvirt.libvirtError:
        return frozenset({"*"})  # cannot tell: ask no test-driver domain for addresses
    return frozenset(unsafe)


DomainListing = list[tuple[libvirt.virDomain, int | None]]


def list_domains(conn: libvirt.virConnect, uri: str) -> tuple[DomainListing, set[str]]:
    """Every domain with its state number (None if the bulk call lacked it), in two calls,
    and the UUIDs of the transient ones."""
    try:
        pairs: DomainListing = [
            (dom, stats.get("state.state"))
            for dom, stats in conn.getAllDomainStats(libvirt.VIR_DOMAIN_STATS_STATE)
        ]
        transient = {
            d.UUIDString() for d in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_TRANSIENT)
        }
    except libvirt.libvirtError as exc:
        raise ConnectorError(
            f"cannot list the domains of {uri}: {message_of(exc)}",
            hint="check that the connecting user may list domains (polkit / ACLs)",
        ) from None
    return pairs, transient


def read_domains(
    pairs: DomainListing,
    transient: set[str],
    host: str,
    uri: str,
    warnings: list[str],
    unsafe: frozenset[str] = frozenset(),
    cache: ParseCache | None = None,
) -> list[VM]:
    """Read each listed domain; one that vanished or cannot be read becomes a warning."""
    vms = []
    for dom, code in pairs:
        try:
            state = state_of(code if code is not None else dom.state()[0])
            persistent = dom.UUIDString() not in transient
            vm = domain_to_vm(dom, state, persistent, host, uri, unsafe, cache)
        except libvirt.libvirtError as exc:
            what = "vanished during inventory" if _gone(exc) else f"unreadable: {message_of(exc)}"
            warnings.append(f"domain {_safe_name(dom)} {what}; skipped")
            continue
        except ConnectorError as exc:
            warnings.append(f"domain {_safe_name(dom)} unreadable: {exc}; skipped")
            continue
        vms.append(vm)
    return vms


def domain_to_vm(
    dom: libvirt.virDomain,
    state: State,
    persistent: bool,
    host: str,
    uri: str,
    unsafe: frozenset[str] = frozenset(),
    cache: ParseCache | None = None,
) -> VM:
    """One domain handle → ``VM`` (its XML, plus NIC addresses when it is running).

    ``unsafe``: networks (``"*"``: all) whose NICs must not be asked for addresses.
    """
    if cache is not None:
        vm = cache.vm(dom, state, persistent, host, uri)
    else:
        vm = parse_domain(dom.XMLDesc(0), host=host, uri=uri, state=state, persistent=persistent)
    risky = any(
        nic.type == "network" and ("*" in unsafe or nic.network in unsafe) for nic in vm.nics
    )
    if state in _LIVE_STATES and vm.nics and not risky:
        found = _addresses(dom, {nic.mac for nic in vm.nics if nic.mac})
        for nic in vm.nics:
            nic.addresses = list(found.get(nic.mac or "", []))
    if vm.agent_channel is not None:
        vm.agent = read_agent(dom, vm)  # asks only a running VM's connected agent
    return vm


def _pools(conn: libvirt.virConnect, warnings: list[str]) -> list[Pool]:
    try:
        handles = conn.listAllStoragePools(0)
    except libvirt.libvirtError as exc:
        warnings.append(f"storage pools not listed: {message_of(exc)}")
        return []
    pools = []
    for handle in handles:
        try:
            pool = parse_pool(handle.XMLDesc(0), active=bool(handle.isActive()))
            vols = handle.listAllVolumes(0) if pool.active else []
        except libvirt.libvirtError as exc:
            warnings.append(f"storage pool {handle.name()} unreadable: {message_of(exc)}")
            continue
        for vol in vols:
            try:
                pool.volumes.append(parse_volume(vol.XMLDesc(0), pool=pool.name))
            except libvirt.libvirtError as exc:
                warnings.append(f"volume {pool.name}/{vol.name()} unreadable: {message_of(exc)}")
        pools.append(pool)
    return pools


def _networks(conn: libvirt.virConnect, warnings: list[str]) -> list[Network]:
    try:
        handles = conn.listAllNetworks(0)
    except libvirt.libvirtError as exc:
        warnings.append(f"networks not listed: {message_of(exc)}")
        return []
    networks = []
    for handle in handles:
        try:
            networks.append(parse_network(handle.XMLDesc(0), active=bool(handle.isActive())))
        except libvirt.libvirtError as exc:
            warnings.append(f"network {handle.name()} unreadable: {message_of(exc)}")
    return networks


def _gone(exc: libvirt.libvirtError) -> bool:
    return exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN


def _safe_name(dom: libvirt.virDomain) -> str:
    try:
        return f"{dom.name()} ({dom.UUIDString()})"
    except libvirt.libvirtError:
        return "<unknown>"


def _addresses(dom: libvirt.virDomain, wanted: set[str]) -> dict[str, list[str]]:
    """MAC → IP addresses, from DHCP leases, then ARP for NICs the leases did not cover.

    Best effort: an error from either source (no lease database, guest down) gives nothing.
    """
    found: dict[str, list[str]] = {}
    for source in (
        libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE,
        libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_ARP,
    ):
        try:
            answer = dom.interfaceAddresses(source, 0) or {}
        except libvirt.libvirtError:
            continue
        for iface in answer.values():
            mac = (iface.get("hwaddr") or "").lower()
            if not mac or found.get(mac):
                continue
            addrs = [a["addr"] for a in iface.get("addrs") or [] if a.get("addr")]
            found[mac] = list(dict.fromkeys(addrs))
        if all(found.get(mac) for mac in wanted):
            break
    return found

"""Another host's disks, read through that host's connection (#12.3; vSphere: #13.3).

A sweep reaches remote hypervisors over their URI (``qemu+ssh://``, ``qemu+tcp://``,
``vsphere://``: a vCenter's datastore files, ranged HTTPS GETs).
Their disk paths name files on *their* machine, so they are never opened here (#10.2);
instead each disk's backing chain is read from the image headers through the connection
(``Connector.open_disk``: for libvirt, ranged ``vol.download``), following backing files
only into the host's storage pools; the chain root is hashed the same way for template
approval, with the digest cached in the store per (host, path, size, mtime); the inspector
worker is served the layers' bytes by its parent (``inspect.served``).

A disk that is not a volume of one of the host's pools is unknown, with that reason (it
starts with "not readable from here", as every remote unknown does). A root larger than
:data:`DIGEST_MAX` is not hashed over the connection: its lineage is unknown, said so.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vmwarden.connectors.base import Connector, DiskUnavailableError, open_connector
from vmwarden.errors import VmwardenError
from vmwarden.inspect.ranged_chain import RangedChain, mtime_of, resolve_ranged_chain
from vmwarden.model import HostInventory, Layer
from vmwarden.model.lineage import remote_key
from vmwarden.model.vm import NOT_HERE

if TYPE_CHECKING:
    from vmwarden.model.ranged import RangedReader

log = logging.getLogger(__name__)

#: The largest remote chain root hashed over a connection in a sweep (a streamed
#: download runs at ~100-200 MB/s on a LAN; 16 GiB is a few minutes, once per change).
DIGEST_MAX = 16 * 1024**3
#: Bytes per ranged read when a connector has no streamed digest of its own.
STREAM_CHUNK = 4 * 1024 * 1024
#: Disk types whose source is a path a storage pool may hold.
PATH_TYPES = ("file", "block", "volume")


def cache_path(host: str, path: str) -> str:
    """The digest cache's key for a remote file (never equal to a local absolute path)."""
    return remote_key(host, path)


def cache_stat(reader: RangedReader) -> os.stat_result:
    """A stat of the remote file as the digest cache compares it: size and mtime (ns)."""
    ident = reader.identity()
    size, mtime_ns = int(ident["size"]), int(ident["mtime_ns"])
    return os.stat_result(
        (0o100600, 0, 0, 1, 0, 0, size, 0, mtime_ns // 10**9, 0), {"st_mtime_ns": mtime_ns}
    )


def digest_reader(reader: RangedReader) -> tuple[str, bool]:
    """``sha256:<hex>`` of a whole layer and whether it stayed unchanged while read: the
    connector's streamed ``digest()`` when it has one, else ranged reads and a comparison
    of its identity before and after (a platform that cannot tell is never cached)."""
    own = getattr(reader, "digest", None)
    if callable(own):
        digest, unchanged = own()
        return str(digest), bool(unchanged)
    before = reader.identity()
    h = hashlib.sha256()
    for offset in range(0, reader.size, STREAM_CHUNK):
        h.update(reader.read(offset, STREAM_CHUNK))
    still = getattr(reader, "still_unchanged", None)
    unchanged = bool(still()) if callable(still) else False
    return "sha256:" + h.hexdigest(), unchanged and reader.identity() == before


@dataclass
class RemoteDisks:
    """Per sweep: each remote host's connection and volumes, and every chain read."""

    lookup: Any  # (path, stat) -> digest | None: the store's digest cache
    remember: Any  # (path, stat, digest) -> None
    digest_max: int = DIGEST_MAX
    #: ask platforms to hold running VMs' disks still while they are read (vSphere: a scan
    #: snapshot each); False reads them live — watch's periodic reconciles and event paths,
    #: which must not snapshot every running VM every few minutes
    stable: bool = True
    chains: dict[tuple[str, str], RangedChain] = field(default_factory=dict)
    _volumes: dict[str, Connector | str] = field(default_factory=dict)
    _connectors: list[Connector] = field(default_factory=list)
    _digests: dict[tuple[str, str], tuple[str | None, str | None]] = field(default_factory=dict)

    def volumes(self, inv: HostInventory) -> Connector | str:
        """The host's disks over a connection of our own (its ``open_disk``), or why
        there is none."""
        if inv.uri not in self._volumes:
            try:
                connector = open_connector(inv.uri)
            except VmwardenError as exc:
                self._volumes[inv.uri] = f"{NOT_HERE}: {exc}"
                return self._volumes[inv.uri]
            self._connectors.append(connector)
            if not callable(getattr(connector, "open_disk", None)):
                self._volumes[inv.uri] = f"{NOT_HERE}: {inv.uri} cannot serve disk bytes"
            else:
                self._volumes[inv.uri] = connector
        return self._volumes[inv.uri]

    def enrich(self, inv: HostInventory, warnings: list[str]) -> None:
        """Read each disk's chain of ``inv`` (a remote host) through its connection and
        stamp mtimes and the root's digest; what cannot be read carries the reason."""
        volumes: Connector | str | None = None
        tops = [
            d.chain[0].path
            for vm in inv.vms
            for d in vm.disks
            if d.device in ("disk", "lun") and d.chain and d.chain[0].type in PATH_TYPES
        ]
        if tops:
            # a platform that must make its disks readable first (EC2: a snapshot each)
            # starts it for all of them at once, not one open_disk after another
            volumes = self.volumes(inv)
            if self.digest_max == 0 and getattr(volumes, "disk_reads_copy_the_disk", False):
                # an event path (no downloads) never opens a disk whose read copies it whole
                # (EC2: a snapshot per volume, minutes each): the chains stay as inventoried
                # and the reconcile reads them
                return
            prepare = getattr(volumes, "prepare_disks", None)
            if callable(prepare):
                prepare([p for p in tops if p], stable=self.stable)
        for vm in inv.vms:
            for disk in vm.disks:
                if disk.device not in ("disk", "lun") or not disk.chain:
                    continue
                top = disk.chain[0]
                if top.type not in PATH_TYPES or not top.path:
                    for layer in disk.chain:
                        layer.error = layer.error or f"{NOT_HERE} ({inv.host} is another host)"
                    continue
                volumes = volumes or self.volumes(inv)
                if isinstance(volumes, str):
                    top.error = volumes
                    disk.chain = [top]
                    continue
                chain = self.chain(volumes, inv.uri, top.path, top.format)
                disk.chain = [_layer(layer, inv.host) for layer in chain.layers]
                disk.chain[0].type = top.type
                root = disk.chain[-1]
                # a VM whose platform names its template (EC2's AMI) is judged by that:
                # its disks are not hashed (a whole EBS volume, for nothing)
                if root.error is None and chain.readers and vm.template_id is None:
                    root.digest = self._digest(chain.readers[-1], root)
                if root.error:
                    warnings.append(f"{vm.name} ({inv.host}) disk {disk.target}: {root.error}")

    def chain(self, volumes: Connector, uri: str, path: str, fmt: str | None) -> RangedChain:
        key = (uri, path)
        if key not in self.chains:
            opener = self._opener(volumes)
            self.chains[key] = resolve_ranged_chain(path, opener, fmt=fmt, mtime=mtime_of)
            for layer in self.chains[key].layers:
                if layer.error and not layer.error.startswith(NOT_HERE):
                    layer.error = f"{NOT_HERE}: {layer.error}"
        return self.chains[key]

    def chain_of(self, uri: str, path: str) -> RangedChain | None:
        """The chain read for disk ``path`` of connection ``uri`` this sweep, if any."""
        return self.chains.get((uri, path))

    @staticmethod
    def _opener(volumes: Connector) -> Any:
        def open_layer(name: str) -> RangedReader:
            try:
                return volumes.open_disk(name)
            except DiskUnavailableError as exc:
                raise OSError(str(exc)) from None

        return open_layer

    def _digest(self, reader: RangedReader, root: Layer) -> str | None:
        """The root's digest from the store's cache, else hashed over the connection; a
        root that was not hashed gets the reason (its lineage is then unknown)."""
        key = (str(reader.identity()["host"]), reader.path)
        if key not in self._digests:
            self._digests[key] = self._hash(reader)
        digest, error = self._digests[key]
        root.error = root.error or error
        return digest

    def _hash(self, reader: RangedReader) -> tuple[str | None, str | None]:
        host = str(reader.identity()["host"])
        name, st = cache_path(host, reader.path), cache_stat(reader)
        digest: str | None = self.lookup(name, st)
        if digest is not None:
            return digest, None
        if self.digest_max <= 0:  # an event path: hashing is the sweep's work
            return None, (
                f"{NOT_HERE}: digest pending: {host}:{reader.path} is hashed by the "
                "next sweep (never on the event path)"
            )
        if reader.size > self.digest_max:
            return None, (
                f"{NOT_HERE}: {host}:{reader.path} is {reader.size} bytes, more than "
                f"vmwarden hashes over a connection ({self.digest_max}); its lineage "
                "is unknown"
            )
        try:
            digest, unchanged = digest_reader(reader)
        except OSError as exc:
            return None, f"{NOT_HERE}: cannot hash {host}:{reader.path}: {exc}"
        if unchanged:
            self.remember(name, st, digest)
        return digest, None

    def close(self) -> None:
        for connector in self._connectors:
            try:
                connector.close()
            except Exception as exc:  # closing is best effort; the sweep's result stands
                log.debug("closing %s: %s", connector, exc)
        self._connectors.clear()
        self._volumes.clear()


def _layer(layer: Layer, host: str) -> Layer:
    return Layer(
        layer.path, layer.format, layer.type, layer.digest, layer.mtime, layer.error, host=host
    )

"""VMDKs read agentlessly over the datastore's HTTPS file access, as ``open_disk`` serves them.

A disk path is ``[datastore] folder/file.vmdk``; it names a file on a datastore, never one
on this machine. The datastore's datacenter (``dcPath``) is looked up once per datastore
per connection; each file gets one ``HEAD`` (size, mtime: the caches' identity) and is read
by range (:mod:`~vmwarden.connectors.vsphere.datastore_http`). No agent, no ESXi shell, no
VM snapshot of a powered-off VM. A text descriptor is resolved to its extents
(:mod:`~vmwarden.connectors.vsphere.vmdk`); a sparse ``KDMV`` VMDK is served as is (dissect
reads it in the sandboxed worker).

Linked clones and snapshots: a delta names its parent, in a sparse ``KDMV`` file's embedded
descriptor (hosted) or in a text descriptor over one sparse extent (ESXi: ``-delta.vmdk``
vmfsSparse, ``-sesparse.vmdk``); the chain reader follows it (:func:`resolve_hint`: within
the datastore) so the chain's root is the template's base disk, hashed for exact lineage,
and the worker stacks the delta over it (dissect parses the grains).

A running VM's disks are read from a snapshot's base: before a sweep reads them the connector
takes a ``vmwarden-scan-<token>`` snapshot (``scan_snapshots``), the VM then writes into a new
delta, and the files the inventory named stop changing: crash-consistent (no quiescing, as
for libvirt's live disks) but stable for the whole read. Where no snapshot can be taken
(it fails; independent disks) the disk is read live and a warning says so.
"""

from __future__ import annotations

import posixpath
import re
import threading
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vmwarden.connectors.vsphere import vmdk
from vmwarden.connectors.vsphere.datastore_http import (
    DatastoreFile,
    DatastoreFileUnavailable,
    DatastoreHttp,
    head,
)
from vmwarden.connectors.vsphere.uri import VsphereTarget
from vmwarden.model.ranged import RangedReader

#: Files whose readers are kept per connection (a template's base disk serves many clones).
MAX_READERS = 64
_PATH = re.compile(r"^\[([^\]\x00-\x1f]+)\] ?(.*)$")

__all__ = ["DatastoreFileUnavailable", "DatastoreFiles", "DatastorePath", "datastore_files"]


@dataclass(frozen=True, slots=True)
class DatastorePath:
    """``[datastore] folder/file.vmdk`` split; ``file`` is relative to the datastore root."""

    datastore: str
    file: str

    def sibling(self, name: str) -> DatastorePath:
        folder = self.file.rpartition("/")[0]
        return DatastorePath(self.datastore, f"{folder}/{name}" if folder else name)

    def __str__(self) -> str:
        return f"[{self.datastore}] {self.file}"


def parse_datastore_path(text: str) -> DatastorePath:
    """Split a vSphere datastore path; anything else (a local path, ``..``) is refused.

    Raises:
        DatastoreFileUnavailable: not ``[datastore] relative/path`` of a regular file name.
    """
    match = _PATH.match(text or "")
    if match is None:
        raise DatastoreFileUnavailable(
            f"{text!r} is not a vSphere datastore path ([datastore] folder/file.vmdk)"
        )
    store, rel = match.group(1), match.group(2)
    parts = rel.split("/")
    if (
        not rel
        or rel.startswith("/")
        or rel.endswith("/")
        or any(p in ("", ".", "..") for p in parts)
        or any(ord(c) < 0x20 for c in rel)
    ):
        raise DatastoreFileUnavailable(f"datastore path {text!r} does not name a file in [{store}]")
    return DatastorePath(store, rel)


def resolve_hint(of: DatastorePath, hint: str) -> str:
    """A parent VMDK's datastore path from the name its child's descriptor gives.

    ``[ds] dir/base.vmdk`` as is; ``/vmfs/volumes/<ds>/dir/base.vmdk`` (ESXi's absolute
    form) as ``[<ds>] dir/base.vmdk`` (a datastore UUID there is then no datastore name, and
    says so when opened); a relative name against the child's folder in its datastore. A
    name that climbs out of the datastore stays visibly outside it (``open_disk`` refuses
    it): a tenant-written hint never reaches another datastore by ``..``.
    """
    hint = hint.replace("\\", "/").strip()
    if hint.startswith("["):
        return hint
    if hint.startswith("/vmfs/volumes/"):
        store, _, rest = hint[len("/vmfs/volumes/") :].partition("/")
        return f"[{store}] {rest}"
    if hint.startswith("/"):
        return f"[{of.datastore}] ../{hint.lstrip('/')}"  # a host path: refused when opened
    folder = of.file.rpartition("/")[0]
    return f"[{of.datastore}] {posixpath.normpath(posixpath.join(folder, hint))}"


class DatastoreFiles:
    """The files of one vCenter's datastores, by datastore path, for one connection.

    ``datacenters(name)`` answers which datacenters (inventory paths, as ``dcPath`` wants
    them) hold a datastore of that name; it is asked once per datastore per connection.
    """

    def __init__(
        self,
        http_: DatastoreHttp,
        datacenters: Callable[[str], list[str]],
    ) -> None:
        self.http = http_
        self._datacenters = datacenters
        self._dc_of: dict[str, str] = {}
        self._files: OrderedDict[str, DatastoreFile] = OrderedDict()
        self._lock = threading.Lock()

    def url(self, where: DatastorePath) -> str:
        dc = self._dc_of.get(where.datastore)
        if dc is None:
            found = self._datacenters(where.datastore)
            if not found:
                raise DatastoreFileUnavailable(
                    f"{where}: no datastore {where.datastore!r} on {self.http.host}"
                )
            if len(found) > 1:
                raise DatastoreFileUnavailable(
                    f"{where}: datastore {where.datastore!r} is in several datacenters "
                    f"({', '.join(sorted(found))}); name one in the URI (vsphere://…/DC)"
                )
            dc = self._dc_of[where.datastore] = found[0]
        query = urllib.parse.urlencode({"dcPath": dc, "dsName": where.datastore})
        return f"/folder/{urllib.parse.quote(where.file)}?{query}"

    def file(self, where: DatastorePath) -> DatastoreFile:
        """A reader of one datastore file (HEAD once; kept for the connection's life)."""
        key = str(where)
        with self._lock:
            cached = self._files.get(key)
            if cached is not None:
                self._files.move_to_end(key)
                return cached
        url = self.url(where)
        size, mtime_ns = head(self.http, url, key)
        reader = DatastoreFile(self.http, where, url, size, mtime_ns)
        with self._lock:
            self._files[key] = reader
            while len(self._files) > MAX_READERS:
                self._files.popitem(last=False)
        return reader

    def open(self, path: str) -> RangedReader:
        """What ``Connector.open_disk`` serves for a VMDK path: the file itself (a sparse
        ``KDMV`` VMDK, read by dissect), or, for a text descriptor, its extents resolved
        (:mod:`~vmwarden.connectors.vsphere.vmdk`).

        Raises:
            DatastoreFileUnavailable: with the reason (path, datastore, file, descriptor).
        """
        where = parse_datastore_path(path)
        top = self.file(where)
        if top.size == 0:
            raise DatastoreFileUnavailable(f"{where}: the file is empty (no disk data)")
        try:
            head_bytes = top.read(0, len(vmdk.DESCRIPTOR_MAGIC))
            if not vmdk.is_descriptor(head_bytes):
                return top
            if top.size > vmdk.MAX_DESCRIPTOR:
                raise vmdk.DescriptorError(f"descriptor of {top.size} bytes is too large")
            desc = vmdk.parse_descriptor(top.read(0, top.size))
            kind = vmdk.plan(desc)
            if kind in ("sparse", "delta"):
                name = desc.extents[0].name
                assert name is not None
                extent = self.file(where.sibling(name))
                if kind == "sparse":
                    return extent
                hint = str(desc.parent_hint)
                return vmdk.DeltaReader(top, extent, hint, lambda h: resolve_hint(where, h))
            return vmdk.ExtentsReader(top, self._pieces(where, desc))
        except vmdk.DescriptorError as exc:
            raise DatastoreFileUnavailable(f"{where}: VMDK descriptor: {exc}") from None
        except OSError as exc:
            raise DatastoreFileUnavailable(f"{where}: {exc}") from None

    def _pieces(
        self, where: DatastorePath, desc: vmdk.Descriptor
    ) -> list[tuple[RangedReader | None, int, int]]:
        pieces: list[tuple[RangedReader | None, int, int]] = []
        for extent in desc.extents:
            length = extent.sectors * vmdk.SECTOR
            if extent.kind == "ZERO" or extent.name is None:
                pieces.append((None, 0, length))
                continue
            reader = self.file(where.sibling(extent.name))
            start = extent.offset * vmdk.SECTOR
            if start + length > reader.size:
                raise vmdk.DescriptorError(
                    f"extent {extent.name} holds {reader.size} bytes, the descriptor says "
                    f"{start + length}"
                )
            pieces.append((reader, start, length))
        return pieces

    def close(self) -> None:
        self.http.close()


def session_cookie(si: Any) -> str | None:
    """The API session's cookie (``name=value``) as pyvmomi keeps it, for ``/folder``."""
    raw = getattr(getattr(si, "_stub", None), "cookie", None)
    return str(raw).split(";", 1)[0].strip() or None if raw else None


def datastore_datacenters(si: Any, only: str | None) -> Callable[[str], list[str]]:
    """``name -> [dcPath, ...]``: the datacenters (under the URI's one, when named) holding
    a datastore of that name, each as its inventory path from the root folder."""

    def find(name: str) -> list[str]:
        from pyVmomi import vim

        content = si.RetrieveContent()
        view = content.viewManager.CreateContainerView(content.rootFolder, [vim.Datacenter], True)
        try:
            found: list[str] = []
            for dc in view.view:
                if only is not None and dc.name != only:
                    continue
                if any(ds.name == name for ds in dc.datastore or []):
                    found.append(_inventory_path(dc, content.rootFolder))
            return found
        finally:
            view.DestroyView()

    return find


def _inventory_path(entity: Any, root: Any) -> str:
    names: list[str] = []
    node = entity
    while node is not None and node != root and len(names) < 64:
        names.append(str(node.name))
        node = getattr(node, "parent", None)
    return "/".join(reversed(names))


def datastore_files(target: VsphereTarget, si: Any, *, timeout: float = 30.0) -> DatastoreFiles:
    """The datastore file access of a logged-in session (``VsphereConnector.open_disk``)."""
    http_ = DatastoreHttp(
        target.host,
        target.port,
        insecure=target.insecure,
        cookie=lambda: session_cookie(si),
        timeout=timeout,
    )
    return DatastoreFiles(http_, datastore_datacenters(si, target.datacenter))

"""Fill in what libvirt does not say about disks: backing chains, mtimes and root digests.

libvirt reports ``<backingStore>`` only for running VMs, so for the others the chain is read
from the image headers (``inspect.chain``, which never follows a link out of the allowed
directories). A chain libvirt reports is held to the same rule: it is cut at the first
backing layer outside the allowed directories, which is then neither stat'ed nor hashed.

Only the chain *root* is hashed: it is what the approved catalog names, and many clones share
it, so it is hashed once per sweep, and never again while it is unchanged (the store's digest
cache, keyed by device, inode, size and mtime).

The allowed directories are the local hosts' libvirt storage pools (dir, fs, netfs), the
directories given by hand (``--images`` on scan, watch and serve) and the directories of
approved templates (``template approve`` records the path). Never the directory of a disk:
a tenant who may define a disk at ``/etc/x.qcow2`` would otherwise make ``/etc`` readable.

Only the disks of a hypervisor on this machine are read here (``HostInventory.local``, as the
connection found it); another host's paths are never opened, whatever file has that name here.
A sweep made with ``remote=True`` reads another host's disks through its connection instead
(``engine.remote_disks``: ``Connector.open_disk``, e.g. a libvirt host's storage pool volumes
or a vCenter's datastore files over HTTPS); without it they stay unknown.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vmwarden.connectors.locality import known_local
from vmwarden.engine.remote_disks import RemoteDisks
from vmwarden.errors import InspectError
from vmwarden.inspect.chain import resolve_chain
from vmwarden.inspect.digest import digest_with_cache
from vmwarden.model import HostInventory, Layer
from vmwarden.model.vm import NOT_HERE

LINEAGE_DEVICES = ("disk", "lun")
#: Remote hosts whose chains and digests are read at once (each over its own connection).
REMOTE_HOSTS_AT_ONCE = 8
POOL_TYPES = ("dir", "fs", "netfs")  # pools whose target is a directory of image files
OUTSIDE_HINT = (
    "to allow it, give its directory with --images DIR (scan, watch, serve), "
    "define a libvirt storage pool there, or approve the template (vmwarden template approve)"
)


def is_local(inv: HostInventory) -> bool:
    """Whether the inventory's disk paths are files on this machine, as its connection found
    (``connectors.locality`` for a record built outside a connection)."""
    return inv.local if inv.local is not None else known_local(inv.uri)


def approved_dirs(store: Any) -> list[Path]:
    """The directories of approved templates (``template approve`` records each path)."""
    dirs = set()
    for tpl in store.templates():
        path = tpl.get("path")
        if path and os.path.isabs(path):
            dirs.add(Path(os.path.dirname(os.path.normpath(path))))
    return sorted(dirs)


@dataclass
class Lineage:
    """Per-sweep memo: every image path is stat'ed, chained and hashed at most once."""

    lookup: Callable[[str, os.stat_result], str | None]
    remember: Callable[[str, os.stat_result, str], None]
    chains: dict[str, list[Layer]] = field(default_factory=dict)
    digests: dict[str, str | None] = field(default_factory=dict)
    digest_errors: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    extra_dirs: list[Path] = field(default_factory=list)  # --images, approved templates' dirs
    allowed_seen: set[Path] = field(default_factory=set)
    local_uris: set[str] = field(default_factory=set)  # hosts whose disks are files here
    # this machine's name: images found under --images are reported under it
    local_hosts: set[str] = field(default_factory=lambda: {socket.gethostname()})
    remote_hosts: set[str] = field(default_factory=set)
    remote: RemoteDisks | None = None  # reads other hosts' disks through their connections
    # a Dask worker's --storage directories: nothing outside them is read (None: no bound)
    confine: list[Path] | None = None

    @classmethod
    def for_store(
        cls,
        store: Any,
        extra_dirs: Iterable[Path] = (),
        *,
        remote: bool = False,
        remote_hashing: bool = True,
        stable_reads: bool = True,
    ) -> Lineage:
        """A sweep's lineage over ``store``'s digest cache; backing files may also lie in
        ``extra_dirs`` (``--images``) and in the approved templates' directories.
        ``remote``: read remote hosts' disks through their connections (then
        :meth:`close` when the sweep is done with them); without ``remote_hashing`` a remote
        root's digest comes only from the cache (an event path must not download a disk, nor
        snapshot a VM); ``stable_reads``: see ``RemoteDisks.stable``."""
        dirs = sorted({Path(d) for d in extra_dirs} | set(approved_dirs(store)))
        reader = None
        if remote:
            reader = RemoteDisks(store.cached_digest, store.remember_digest)
            reader.digest_max = reader.digest_max if remote_hashing else 0
            reader.stable = remote_hashing and stable_reads
        return cls(store.cached_digest, store.remember_digest, extra_dirs=dirs, remote=reader)

    def close(self) -> None:
        """Close the connections opened to read remote disks."""
        if self.remote is not None:
            self.remote.close()

    def readable_vm(self, uri: str) -> bool:
        """Whether a VM of connection ``uri`` has its disks on this machine."""
        return uri in self.local_uris

    def readable_host(self, host: str) -> bool:
        """Whether images reported for ``host`` are files here (a remote host of the same
        name makes it ambiguous: then not)."""
        return host in self.local_hosts and host not in self.remote_hosts

    def all_allowed_dirs(self) -> list[Path]:
        """Every directory a backing file may be in, over all local hosts of the sweep."""
        return sorted(self.allowed_seen | set(self.extra_dirs))

    def digest(self, path: str) -> str | None:
        """A file's digest through the sweep memo and the store's cache (None: unreadable)."""
        return self._digest(path)

    def enrich_all(
        self, inventories: list[HostInventory], tick: Callable[[int], None] | None = None
    ) -> None:
        """:meth:`enrich` each host: this machine's here, remote hosts (read through their
        connections) at once, a thread each (at most :data:`REMOTE_HOSTS_AT_ONCE`), so one
        host's slow storage or link does not hold up the others' chains and digests.
        ``tick(done)`` after each host, from this thread."""
        remote = [inv for inv in inventories if self.remote is not None and not is_local(inv)]
        done = 0
        for inv in inventories:
            if not any(inv is r for r in remote):
                self.enrich(inv)
                done += 1
                if tick is not None:
                    tick(done)
        if not remote:
            return
        with ThreadPoolExecutor(
            max_workers=min(REMOTE_HOSTS_AT_ONCE, len(remote)), thread_name_prefix="lineage"
        ) as ex:
            for future in as_completed([ex.submit(self.enrich, inv) for inv in remote]):
                future.result()
                done += 1
                if tick is not None:
                    tick(done)

    def enrich(self, inv: HostInventory) -> None:
        local = is_local(inv)
        if local:
            self.local_uris.add(inv.uri)
            self.local_hosts.add(inv.host)
        else:
            self.remote_hosts.add(inv.host)
        allowed = self._allowed_dirs(inv, local)
        if not local and self.remote is not None:
            self.remote.enrich(inv, self.warnings)
            return
        disks = sum(1 for vm in inv.vms for d in vm.disks if d.device in LINEAGE_DEVICES)
        if not local and disks:
            self.warnings.append(
                f"{inv.host} ({inv.uri}) is another host: its disks are not files of this "
                f"machine, so its {disks} disk(s) are not read from here and stay unknown"
            )
        for vm in inv.vms:
            for disk in vm.disks:
                if disk.device not in LINEAGE_DEVICES or not disk.chain:
                    continue
                if not local:
                    for layer in disk.chain:
                        layer.error = layer.error or f"{NOT_HERE} ({inv.host} is another host)"
                    continue
                disk.chain = self._chain(disk.chain, allowed)
                self._stamp(disk.chain)
                root = disk.chain[-1]
                if root.error:
                    hint = f"; {OUTSIDE_HINT}" if "outside allowed" in root.error else ""
                    self.warnings.append(
                        f"{vm.name} ({inv.host}) disk {disk.target}: {root.error}{hint}"
                    )

    def _allowed_dirs(self, inv: HostInventory, local: bool) -> list[Path]:
        """This host's directory pools plus the sweep's extra directories (never a disk's
        own directory: defining a disk must not make its neighbours readable)."""
        dirs = {Path(p.path) for p in inv.pools if p.path and p.type in POOL_TYPES}
        dirs |= set(self.extra_dirs)
        if self.confine is not None:
            dirs = _within(dirs, self.confine)
        if local:
            self.allowed_seen |= dirs
        return sorted(dirs)

    def _chain(self, chain: list[Layer], allowed: list[Path]) -> list[Layer]:
        """Keep libvirt's chain when it has one; else read it from the image headers."""
        top = chain[0]
        if len(chain) > 1:
            return _confine(chain, allowed)
        if top.type != "file" or not top.path or top.error:
            return chain  # an error already (a worker's refusal): never opened
        if top.path not in self.chains:
            if not os.path.exists(top.path):
                top.error = f"disk image not found: {top.path}"
                self.chains[top.path] = [top]
            else:
                self.chains[top.path] = resolve_chain(
                    top.path, fmt=top.format, allowed_dirs=allowed
                )
        return [_copy(layer) for layer in self.chains[top.path]]

    def _stamp(self, chain: Iterable[Layer]) -> None:
        layers = list(chain)
        for i, layer in enumerate(layers):
            if layer.type not in ("file", "block") or not layer.path or layer.error:
                continue
            try:
                st = os.stat(layer.path)
            except OSError as exc:
                layer.error = f"cannot stat {layer.path}: {exc.strerror}"
                continue
            layer.mtime = datetime.fromtimestamp(st.st_mtime, UTC)
            if i == len(layers) - 1:
                layer.digest = self._digest(layer.path)
                if layer.digest is None:
                    layer.error = self.digest_errors.get(layer.path)

    def _digest(self, path: str) -> str | None:
        """The root's digest; a root that cannot be hashed (a block device, a special file,
        unreadable) has none, and the reason lands on the layer (so the VM is unknown)."""
        if path not in self.digests:
            try:
                self.digests[path] = digest_with_cache(path, self.lookup, self.remember)
            except (InspectError, OSError) as exc:
                self.digest_errors[path] = f"cannot hash {path}: {exc}"
                self.digests[path] = None
        return self.digests[path]


def _inside(path: str, allowed: list[Path]) -> bool:
    real = os.path.realpath(path)
    for d in allowed:
        top = os.path.realpath(d)
        if real == top or real.startswith(top.rstrip(os.sep) + os.sep):
            return True
    return False


def _within(dirs: set[Path], bounds: list[Path]) -> set[Path]:
    """The parts of ``dirs`` inside ``bounds``: a dir inside a bound, or a bound inside a
    dir (a pool at /var/lib/libvirt, a worker's --storage /var/lib/libvirt/images)."""
    out = {d for d in dirs if _inside(str(d), bounds)}
    out |= {b for b in bounds for d in dirs if _inside(str(b), [d])}
    return out


def _confine(chain: list[Layer], allowed: list[Path]) -> list[Layer]:
    """libvirt's chain, cut at the first backing layer outside ``allowed`` (which keeps an
    error and becomes the root: unknown lineage, never opened)."""
    kept = [chain[0]]
    for layer in chain[1:]:
        kept.append(layer)
        if layer.path and layer.type in ("file", "block") and not _inside(layer.path, allowed):
            layer.error = layer.error or f"backing file outside allowed directories: {layer.path}"
            break
    return kept


def _copy(layer: Layer) -> Layer:
    return Layer(
        layer.path, layer.format, layer.type, layer.digest, layer.mtime, layer.error, layer.host
    )

"""Fill in what libvirt does not say about disks: backing chains, mtimes and root digests.

libvirt reports ``<backingStore>`` only for running VMs, so for the others the chain is read
from the image headers (``inspect.chain``, which never follows a link out of the allowed
directories). A chain libvirt reports is held to the same rule: it is cut at the first
backing layer outside the allowed directories, which is then neither stat'ed nor hashed.

Only the chain *root* is hashed: it is what the approved catalog names, and many clones share
it, so it is hashed once per sweep, and never again while it is unchanged (the store's digest
cache, keyed by device, inode, size and mtime).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

from vmwarden.errors import InspectError
from vmwarden.inspect.chain import resolve_chain
from vmwarden.inspect.digest import digest_with_cache
from vmwarden.model import HostInventory, Layer

LINEAGE_DEVICES = ("disk", "lun")


def is_local(uri: str) -> bool:
    """Whether the URI's disk paths are paths on this machine (so they can be read)."""
    parsed = urlparse(uri)
    return parsed.hostname in (None, "", "localhost") and "+ssh" not in parsed.scheme


@dataclass
class Lineage:
    """Per-sweep memo: every image path is stat'ed, chained and hashed at most once."""

    lookup: Callable[[str, os.stat_result], str | None]
    remember: Callable[[str, os.stat_result, str], None]
    chains: dict[str, list[Layer]] = field(default_factory=dict)
    digests: dict[str, str | None] = field(default_factory=dict)
    digest_errors: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    extra_dirs: list[Path] = field(default_factory=list)  # --images: storage given by hand
    allowed_seen: set[Path] = field(default_factory=set)

    def all_allowed_dirs(self) -> list[Path]:
        """Every directory a backing file may be in, over all local hosts of the sweep."""
        return sorted(self.allowed_seen | set(self.extra_dirs))

    def digest(self, path: str) -> str | None:
        """A file's digest through the sweep memo and the store's cache (None: unreadable)."""
        return self._digest(path)

    def enrich(self, inv: HostInventory) -> None:
        local = is_local(inv.uri)
        allowed = self._allowed_dirs(inv)
        for vm in inv.vms:
            for disk in vm.disks:
                if disk.device not in LINEAGE_DEVICES or not disk.chain:
                    continue
                if not local:
                    for layer in disk.chain:
                        layer.error = (
                            layer.error or f"not readable from here ({inv.host} is remote)"
                        )
                    continue
                disk.chain = self._chain(disk.chain, allowed)
                self._stamp(disk.chain)
                root = disk.chain[-1]
                if root.error:
                    self.warnings.append(f"{vm.name} ({inv.host}) disk {disk.target}: {root.error}")

    def _allowed_dirs(self, inv: HostInventory) -> list[Path]:
        dirs = {Path(p.path) for p in inv.pools if p.path and p.type == "dir"}
        dirs |= set(self.extra_dirs)
        for vm in inv.vms:
            for disk in vm.disks:
                if disk.source and disk.type == "file":
                    dirs.add(Path(disk.source).parent)
        if is_local(inv.uri):
            self.allowed_seen |= dirs
        return sorted(dirs)

    def _chain(self, chain: list[Layer], allowed: list[Path]) -> list[Layer]:
        """Keep libvirt's chain when it has one; else read it from the image headers."""
        top = chain[0]
        if len(chain) > 1:
            return _confine(chain, allowed)
        if top.type != "file" or not top.path:
            return chain
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
    return Layer(layer.path, layer.format, layer.type, layer.digest, layer.mtime, layer.error)

"""The image list of a sweep: every file in any disk chain, plus every pool volume."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime

from vmwarden.model import HostInventory, Image


def collect_images(inventories: list[HostInventory], catalog: dict[str, str]) -> list[Image]:
    images: dict[tuple[str, str], Image] = {}
    for inv in inventories:
        for vm in inv.vms:
            for disk in vm.disks:
                for i, layer in enumerate(disk.chain):
                    if not layer.path or layer.type not in ("file", "block", "volume"):
                        continue
                    img = images.setdefault(
                        (inv.host, layer.path), Image(path=layer.path, host=inv.host)
                    )
                    img.format = img.format or layer.format
                    img.digest = img.digest or layer.digest
                    img.mtime = img.mtime or layer.mtime
                    img.error = img.error or layer.error
                    if i + 1 < len(disk.chain):
                        img.backing = disk.chain[i + 1].path
                    if vm.id not in img.attached_to:
                        img.attached_to.append(vm.id)
        for pool in inv.pools:
            for vol in pool.volumes:
                img = images.setdefault((inv.host, vol.path), Image(path=vol.path, host=inv.host))
                img.pool = pool.name
                img.format = img.format or vol.format
                img.size = vol.allocation if vol.allocation is not None else vol.capacity
                img.mtime = img.mtime or vol.mtime
                img.backing = img.backing or vol.backing
    for img in images.values():
        img.template = catalog.get(img.digest) if img.digest else None
    return sorted(images.values(), key=lambda i: (i.host, i.path))


def merge_discovered(
    images: list[Image], discovered: list[Image], local_hosts: set[str]
) -> list[Image]:
    """Add images found by walking this machine's storage directories; a file already known
    from a local host's disk chain or pool keeps that record and gains the stat facts (mode,
    size). A remote host's image at the same path is another file: never merged with it."""
    by_path = {img.path: img for img in images if img.host in local_hosts}
    out = list(images)
    for found in discovered:
        known = by_path.get(found.path)
        if known is None:
            out.append(found)
            by_path[found.path] = found
            continue
        known.mode = found.mode
        known.size = known.size or found.size
        known.format = known.format or found.format
        known.mtime = known.mtime or found.mtime
    return out


def classify(images: list[Image], catalog: dict[str, str], local_hosts: set[str]) -> None:
    """attached (a VM uses it, directly or as a backing file), template (approved), orphaned.

    Hosts reached through local URIs (``test:///…``, ``qemu:///system``) share this machine's
    files: a path used by a VM of any of them is used, whichever host's pool lists it.
    """
    used_here = {i.path for i in images if i.attached_to and i.host in local_hosts}
    for img in images:
        if img.host in local_hosts:
            fill_local_stat(img)
        img.template = catalog.get(img.digest) if img.digest else img.template
        if img.attached_to or (img.host in local_hosts and img.path in used_here):
            img.kind = "attached"
        elif img.template:
            img.kind = "template"
        else:
            img.kind = "orphaned"


def fill_local_stat(img: Image) -> None:
    """Size, mtime and mode from the file itself when the host's view lacks them.

    A pool's volume list may report allocation 0 and no timestamps (the test driver does;
    so do some pool types): on this machine the file is the authority. ``lstat`` only —
    a symlink is not followed, nothing is read."""
    if img.size and img.mtime is not None and img.mode is not None:
        return
    try:
        st = os.lstat(img.path)
    except OSError:
        return
    if not stat.S_ISREG(st.st_mode):
        return
    img.size = img.size or st.st_size
    img.mtime = img.mtime or datetime.fromtimestamp(st.st_mtime, UTC)
    img.mode = img.mode if img.mode is not None else stat.S_IMODE(st.st_mode)

"""Guest disks in the layouts issue 3 names beyond a partition and ext4: LVM and XFS.

Built with the real tools, as an installer would lay them out, then converted to qcow2:

* LVM: a loop device over a raw file, ``pvcreate`` / ``vgcreate`` / ``lvcreate`` (unique VG
  name ``vmwtest<hex>``, only ever looked up on that loop device), ext4 of the guest tree
  written where the LV's extents lie. Activation is off (``global/activation=0``): this
  machine has no device-mapper in its kernel, and the LV's bytes need no mapping since a
  one-segment linear LV is a plain range of the PV. The VG is removed and the loop device
  detached in ``finally``, whatever happened.
* XFS: ``mkfs.xfs -p protofile`` copies the guest tree in (no mount, no privileges).
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import uuid
from pathlib import Path

from tests.conftest import qemu_img

MIB = 1024 * 1024
#: No device-mapper here (and none needed): LVM writes metadata only.
LVM_CONFIG = "global { activation = 0 } activation { udev_sync = 0 udev_rules = 0 }"
_LVM_ENV = {**os.environ, "DM_DISABLE_UDEV": "1", "LVM_SUPPRESS_FD_WARNINGS": "1"}


def _run(*args: str | Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(a) for a in args], check=False, capture_output=True, text=True, env=env
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))}: {done.stderr.strip()[-400:]}")
    return done.stdout


def _lvm(command: str, loops: list[str], *args: str) -> str:
    """An LVM command that sees only ``loops`` (never the host's or other engineers' VGs)."""
    devices = [a for loop in loops for a in ("--devices", loop)]
    return _run(command, "--config", LVM_CONFIG, *devices, *args, env=_LVM_ENV)


def lvm_ext4_images(
    directory: Path, tree: Path, *, disks: int = 1, size_mb: int = 64
) -> tuple[list[Path], str]:
    """qcow2 disks whose PVs make VG ``vmwtest<hex>``; its LV ``root`` (all the extents, so
    spanning every disk) holds ext4 of ``tree``. Returns the disks and the VG name."""
    vg = f"vmwtest{uuid.uuid4().hex[:8]}"
    raws = [directory / f"lvm-{vg}-{i}.raw" for i in range(disks)]
    for raw in raws:
        with raw.open("wb") as f:
            f.truncate(size_mb * MIB)
    loops: list[str] = []
    created = False
    try:
        loops += [_run("losetup", "--find", "--show", raw).strip() for raw in raws]
        for loop in loops:
            _lvm("pvcreate", loops, "-q", "-y", loop)
        _lvm("vgcreate", loops, "-q", vg, *loops)
        created = True
        _lvm("lvcreate", loops, "-q", "-y", "--activate", "n", "--zero", "n", "-l", "100%FREE",
             "-n", "root", vg)  # fmt: skip
        _write_lv(directory, tree, loops, raws, vg)
        out = [raw.with_suffix(".qcow2") for raw in raws]
        for raw, qcow2 in zip(raws, out, strict=True):
            qemu_img("convert", "-q", "-f", "raw", "-O", "qcow2", raw, qcow2)
    finally:
        if created:
            _lvm("vgremove", loops, "-q", "-y", "-f", vg)
        for loop in loops:
            _run("losetup", "-d", loop)
        for raw in raws:
            raw.unlink()
    return out, vg


def _write_lv(directory: Path, tree: Path, loops: list[str], raws: list[Path], vg: str) -> None:
    """ext4 of ``tree`` made as the LV's bytes, each segment copied where its extents lie
    (what device-mapper's linear target would map)."""
    from tests.inspect.conftest import mkfs_ext4

    segments = _lv_segments(loops, vg)
    lv = directory / f"{vg}-root.img"
    mkfs_ext4(lv, tree, size_mb=sum(size for *_, size in segments) // MIB)
    try:
        with lv.open("rb") as src:
            for loop, offset, size in segments:
                with raws[loops.index(loop)].open("r+b") as dst:
                    dst.seek(offset)
                    dst.write(src.read(size))
    finally:
        lv.unlink()


def _lv_segments(loops: list[str], vg: str) -> list[tuple[str, int, int]]:
    """The LV ``root``'s linear segments in order: (loop device, offset in it, bytes)."""
    pvs = _lvm("pvs", loops, "--noheadings", "--units", "b", "--nosuffix",
               "-o", "pv_name,pe_start,vg_extent_size")  # fmt: skip
    starts = {
        name: (int(pe), int(ext)) for name, pe, ext in (ln.split() for ln in pvs.splitlines())
    }
    listing = _lvm("lvs", loops, "--noheadings", "--units", "b", "--nosuffix", "--segments",
                   "-o", "seg_start,seg_pe_ranges,seg_size", f"{vg}/root")  # fmt: skip
    segments = []
    for line in sorted(listing.splitlines(), key=lambda text: int(text.split()[0])):
        _, ranges, size = line.split()
        match = re.fullmatch(r"(.+):(\d+)-\d+", ranges)
        if match is None:
            raise RuntimeError(f"unexpected LV segment: {line}")
        pe_start, extent = starts[match.group(1)]
        segments.append((match.group(1), pe_start + int(match.group(2)) * extent, int(size)))
    return segments


def protofile(tree: Path) -> str:
    """The ``mkfs.xfs -p`` prototype of ``tree``: its dirs, files and symlinks, owned by root."""
    lines = ["vmwarden-test", "0 0", "d--755 0 0"]
    _proto_dir(tree, lines, depth=1)
    lines.append("$")
    return "\n".join(lines) + "\n"


def _proto_dir(directory: Path, lines: list[str], depth: int) -> None:
    pad = "  " * depth
    for entry in sorted(directory.iterdir()):
        st = entry.lstat()
        if any(c.isspace() or c == ":" for c in entry.name):
            raise ValueError(f"name not expressible in a protofile: {entry}")
        mode = ("u" if st.st_mode & stat.S_ISUID else "-") + (
            "g" if st.st_mode & stat.S_ISGID else "-"
        )
        mode += f"{stat.S_IMODE(st.st_mode) & 0o777:03o}"
        if stat.S_ISLNK(st.st_mode):
            lines.append(f"{pad}{entry.name} l{mode} 0 0 {os.readlink(entry)}")
        elif stat.S_ISDIR(st.st_mode):
            lines.append(f"{pad}{entry.name} d{mode} 0 0")
            _proto_dir(entry, lines, depth + 1)
            lines.append(f"{pad}$")
        elif stat.S_ISREG(st.st_mode):
            lines.append(f"{pad}{entry.name} -{mode} 0 0 {entry.resolve()}")


def xfs_image(directory: Path, tree: Path, *, size_mb: int = 300) -> Path:
    """A qcow2 disk that is one XFS filesystem holding ``tree`` (300 MiB: mkfs.xfs's minimum)."""
    raw = directory / "xfs.raw"
    proto = directory / "xfs.proto"
    proto.write_text(protofile(tree))
    with raw.open("wb") as f:
        f.truncate(size_mb * MIB)
    try:
        _run("mkfs.xfs", "-q", "-f", "-L", "root", "-p", proto, raw)
        out = directory / "xfs.qcow2"
        qemu_img("convert", "-q", "-f", "raw", "-O", "qcow2", raw, out)
    finally:
        raw.unlink()
        proto.unlink()
    return out


class LayoutImages:
    """The guest tree of :class:`~tests.inspect.conftest.GuestImages` on LVM and on XFS,
    and a VG spanning two disks (each disk alone is uninspectable)."""

    def __init__(self, root: Path, tree: Path) -> None:
        self.root = root
        (self.lvm,), self.vg = lvm_ext4_images(root, tree)
        self.xfs = xfs_image(root, tree)
        self.split, self.split_vg = lvm_ext4_images(root, tree, disks=2, size_mb=32)

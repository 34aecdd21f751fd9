"""Real disks for the content-lineage cases of issue 12 item 4, built from the Debian image.

Each case is what an administrator's tools make, changed by the real kernel ext4 driver
(loop device, mounted read-write), never by editing bytes by hand:

- ``full_used``: ``qemu-img convert`` qcow2 → raw, mounted and *used* (hostname and
  machine-id changed, 25 MB of new files, a package added: ``jq``'s files from its .deb and
  its dpkg status entry), converted raw → qcow2;
- ``trimmed``: a raw full copy whose guest deleted docs, locales and time zones, then fstrim;
- ``grown``: a raw full copy grown by 512 MiB (``qemu-img resize``, the partition moved to
  the new end with ``sfdisk``, ``resize2fs``), as growpart/cloud-init do on first boot;
- ``stream_vmdk``: ``full_used`` converted to a streamOptimized vmdk (compressed grains);
- ``unrelated``: the same GPT layout with an ext4 filesystem of this host's /usr/share/doc.

Built once per template state and cached beside it (keyed by the template's size, mtime and
:data:`VERSION`), so tests and ``make bench`` pay the build once. Needs root and loop devices.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import random
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tests.inspect.conftest import mkfs_ext4

VERSION = 1
TEMPLATE = Path(
    os.environ.get("VMWARDEN_DEBIAN_IMAGE", "/var/cache/vmwarden-test/debian-minbase.qcow2")
)
OTHER_BUILD = TEMPLATE.with_name("debian-minbase-other-build.qcow2")
AGENT_BUILD = TEMPLATE.with_name("agent-guest.qcow2")
PART_START = 2048 * 512  # scripts/debian-disk.sh: one partition from 1 MiB


def _run(*args: str | Path) -> str:
    return subprocess.run([str(a) for a in args], check=True, capture_output=True, text=True).stdout


def cache_dir(template: Path = TEMPLATE) -> Path:
    st = template.stat()
    key = hashlib.sha256(f"{VERSION}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:12]
    return template.parent / f"lineage-{key}"


@contextlib.contextmanager
def mounted(raw: Path) -> Iterator[Path]:
    """The ext4 partition of ``raw`` mounted read-write through a loop device."""
    loop = _run("losetup", "-f", "--show", "-o", str(PART_START), raw).strip()
    where = Path(tempfile.mkdtemp(prefix="vmw-i-mnt."))
    try:
        _run("mount", "-t", "ext4", loop, where)
        try:
            yield where
        finally:
            _run("umount", where)
    finally:
        _run("losetup", "-d", loop)
        where.rmdir()


def _use(root: Path) -> None:
    """What a guest does in its first days: rename itself, add data and a package."""
    (root / "etc/hostname").write_text("web-prod-17\n")
    (root / "etc/machine-id").write_text(hashlib.md5(b"web-prod-17").hexdigest() + "\n")
    data = root / "srv/app"
    data.mkdir(parents=True, exist_ok=True)
    for i in range(25):
        (data / f"blob-{i:02}.bin").write_bytes(os.urandom(1024 * 1024))
    debs = sorted(glob.glob("/var/cache/apt/archives/jq_*.deb"))
    if not debs:
        raise RuntimeError("no jq .deb in /var/cache/apt/archives to 'install'")
    _run("dpkg-deb", "-x", debs[0], root)
    fields = _run("dpkg-deb", "-f", debs[0])
    with (root / "var/lib/dpkg/status").open("a") as status:
        status.write(
            "\n" + fields.replace("Package: jq", "Package: jq\nStatus: install ok installed")
        )


def build_full_used(out: Path, template: Path = TEMPLATE) -> Path:
    work = Path(tempfile.mkdtemp(prefix="vmw-i-full.", dir=out.parent))
    try:
        raw = work / "disk.raw"
        _run("qemu-img", "convert", "-q", "-f", "qcow2", "-O", "raw", template, raw)
        with mounted(raw) as root:
            _use(root)
        _run("qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", raw, str(out) + ".tmp")
        os.replace(str(out) + ".tmp", out)
    finally:
        shutil.rmtree(work)
    return out


def build_trimmed(out: Path, template: Path = TEMPLATE) -> Path:
    """A full copy whose guest removed documentation, locales and time zones (about a third
    of the template's data blocks) and ran ``fstrim``: the freed blocks read as zeros, as on
    a thin disk with discard. Similarity falls with the share of the template's data gone."""
    tmp = Path(str(out) + ".tmp")
    _run("qemu-img", "convert", "-q", "-f", "qcow2", "-O", "raw", template, tmp)
    with mounted(tmp) as root:
        for gone in ("doc", "man", "info", "locale", "zoneinfo", "i18n"):
            shutil.rmtree(root / "usr/share" / gone, ignore_errors=True)
        _run("sync", "-f", root)  # blocks are free for fstrim once the journal committed
        _run("fstrim", root)
    os.replace(tmp, out)
    return out


def build_grown(out: Path, template: Path = TEMPLATE) -> Path:
    """A raw full copy, the disk grown by 512 MiB and the partition and filesystem with it."""
    tmp = Path(str(out) + ".tmp")
    _run("qemu-img", "convert", "-q", "-f", "qcow2", "-O", "raw", template, tmp)
    _run("qemu-img", "resize", "-q", "-f", "raw", tmp, "+512M")
    subprocess.run(
        ["sfdisk", "-q", "--no-reread", "-N", "1", str(tmp)],
        input=", +\n",
        text=True,
        check=True,
        capture_output=True,
    )
    table = json.loads(_run("sfdisk", "-J", tmp))["partitiontable"]["partitions"][0]
    size = int(table["size"]) * 512
    loop = _run("losetup", "-f", "--show", "-o", str(PART_START), "--sizelimit", str(size), tmp)
    try:
        _run("e2fsck", "-f", "-p", loop.strip())
        _run("resize2fs", loop.strip())
    finally:
        _run("losetup", "-d", loop.strip())
    os.replace(tmp, out)
    return out


def build_unrelated(out: Path) -> Path:
    tmp = Path(str(out) + ".tmp")
    with tmp.open("wb") as f:
        f.truncate(1536 * 1024 * 1024)
    subprocess.run(
        ["sfdisk", "-q", str(tmp)],
        input="label: gpt\nstart=2048, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n",
        text=True,
        check=True,
        capture_output=True,
    )
    _run(
        "mkfs.ext4", "-F", "-q", "-E", f"offset={PART_START}", "-d", "/usr/share/doc", tmp, "1400M"
    )
    _run("qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", tmp, out)
    tmp.unlink()
    return out


# --- small ext4 images, built in a second (tests of the mechanism) ---


def tree(root: Path, *, seed: int, files: int = 60) -> Path:
    """A guest-like tree: binaries-sized files of pseudo-random content, some config."""
    (root / "etc").mkdir(parents=True)
    (root / "usr/bin").mkdir(parents=True)
    (root / "etc/hostname").write_text(f"guest-{seed}\n")
    rng = random.Random(seed)  # reproducible "binaries" of this build
    for i in range(files):
        (root / f"usr/bin/tool{i:03}").write_bytes(rng.randbytes(20_000 + 1000 * i))
    return root


def ext4_raw(where: Path, name: str, *, seed: int, files: int = 60) -> Path:
    image = where / name
    image.write_bytes(b"")
    mkfs_ext4(image, tree(where / f"{name}.tree", seed=seed, files=files), size_mb=48)
    return image


def cases(template: Path = TEMPLATE) -> dict[str, Path]:
    """Every built case (built now if missing), by name."""
    where = cache_dir(template)
    where.mkdir(parents=True, exist_ok=True)
    built = {
        "full_used": where / "full-used.qcow2",
        "grown": where / "grown.raw",
        "trimmed": where / "trimmed.raw",
        "stream_vmdk": where / "full-used-stream.vmdk",
        "unrelated": where / "unrelated.qcow2",
    }
    if not built["full_used"].exists():
        build_full_used(built["full_used"], template)
    if not built["grown"].exists():
        build_grown(built["grown"], template)
    if not built["trimmed"].exists():
        build_trimmed(built["trimmed"], template)
    if not built["stream_vmdk"].exists():  # the used copy again, as an OVA's disk ships
        tmp = Path(str(built["stream_vmdk"]) + ".tmp")
        stream = "subformat=streamOptimized"
        _run("qemu-img", "convert", "-q", "-O", "vmdk", "-o", stream, built["full_used"], tmp)
        os.replace(tmp, built["stream_vmdk"])
    if not built["unrelated"].exists():
        build_unrelated(built["unrelated"])
    return built

"""SCAP fixtures: Debian's real SSG content and the real Debian image mounted for OpenSCAP.

OpenSCAP is the reference the SCAP tests compare against. It reads a filesystem, not a
disk image, so the test image is converted to raw, its root partition attached read-only
to a loop device (qemu-nbd does not work in this environment) and mounted read-only;
``OSCAP_PROBE_ROOT`` then points oscap at it. Everything is undone at the end of the
session, even when a test fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

SSG_CONTENT = Path("/usr/share/xml/scap/ssg/content")
DEBIAN11_DS = SSG_CONTENT / "ssg-debian11-ds.xml"
DEBIAN11_OVAL = SSG_CONTENT / "ssg-debian11-oval.xml"
DEBIAN_IMAGE = Path(
    os.environ.get("VMWARDEN_DEBIAN_IMAGE", "/var/cache/vmwarden-test/debian-minbase.qcow2")
)
MISSING_CONTENT = (
    "SSG content or oscap missing: apt-get install ssg-debian ssg-debderived "
    "openscap-scanner (scripts/install-deps.sh)"
)


def _run(*argv: str | Path) -> str:
    done = subprocess.run([str(a) for a in argv], check=True, capture_output=True, text=True)
    return done.stdout


@pytest.fixture(scope="session")
def ssg_debian11_ds() -> Path:
    """Debian 11's SCAP 1.3 datastream as Debian ships it (package ssg-debian)."""
    if not DEBIAN11_DS.is_file() or shutil.which("oscap") is None:
        pytest.fail(MISSING_CONTENT)
    return DEBIAN11_DS


@pytest.fixture(scope="session")
def debian_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The Debian test image's root filesystem, mounted read-only (loop device, root).

    A raw copy is needed because a loop device cannot read qcow2; the copy is sparse
    (~180 MiB used). The partition's offset comes from ``sfdisk -J`` (the image is GPT
    with one root partition, scripts/build-debian-image.sh).
    """
    if not DEBIAN_IMAGE.is_file():
        pytest.fail(f"{DEBIAN_IMAGE} missing: bash scripts/build-debian-image.sh {DEBIAN_IMAGE}")
    work = tmp_path_factory.mktemp("debian-root")
    raw = work / "disk.raw"
    _run("qemu-img", "convert", "-q", "-O", "raw", DEBIAN_IMAGE, raw)
    table = json.loads(_run("sfdisk", "-J", raw))["partitiontable"]
    sector = int(table.get("sectorsize", 512))
    start = int(table["partitions"][0]["start"]) * sector
    loop = _run("losetup", "-r", "-f", "--show", "-o", str(start), raw).strip()
    mnt = work / "mnt"
    mnt.mkdir()
    try:
        _run("mount", "-o", "ro,noload", loop, mnt)
        try:
            yield mnt
        finally:
            subprocess.run(["umount", str(mnt)], check=False)
    finally:
        subprocess.run(["losetup", "-d", loop], check=False)
        raw.unlink(missing_ok=True)

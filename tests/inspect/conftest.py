"""Fixtures for the inspect tests: real images made with qemu-img (``opened``, the record of
opens, is shared from ``tests/conftest.py``)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import qemu_img
from tests.inspect.layouts import LayoutImages
from tests.inspect.windows import WindowsImages

MIB = 1024 * 1024


class Images:
    """Real images under ``root``, made by ``qemu-img`` as an administrator would."""

    def __init__(self, root: Path) -> None:
        self.root = root

    qemu_img = staticmethod(qemu_img)  # tests reach it as images.qemu_img(...)

    def qcow2(
        self,
        name: str,
        *,
        backing: str | None = None,
        backing_fmt: str | None = "qcow2",
        size: str = "64M",
    ) -> Path:
        """``qemu-img create -f qcow2``; with ``backing``, a linked clone naming it verbatim."""
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        args: list[str | Path] = ["create", "-q", "-f", "qcow2"]
        if backing is not None:
            args += ["-u", "-b", backing]
            if backing_fmt:
                args += ["-F", backing_fmt]
        self.qemu_img(*args, path, size)
        return path

    def raw(self, name: str, data: bytes = b"", size: int = 4 * MIB) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            f.truncate(size)
            f.write(data)
        return path

    def convert(self, src: Path, fmt: str, name: str) -> Path:
        out = self.root / name
        self.qemu_img("convert", "-q", "-O", fmt, src, out)
        return out


@pytest.fixture
def images(tmp_path: Path) -> Images:
    return Images(tmp_path)


# --- guest images built from real directory trees (session-scoped: built once per run) ----

KEY = bytes(range(32))  # the fingerprint key the guest-facts tests use
SHARED_HASH = "$y$j9T$F5Jx5fExrKuPm9xkUoxaJ1$yW8bXQ5Q0GJmDSyb3l4s0Yk1mWg.V2rqFf6uLqDXy3C"
ROOT_HASH = "$6$rounds=5000$saltsalt$7Y3dN7XmR9hQeIu8cvm3hS0bW3oWfDqgcW1p0rK9jzVn2rL3o4tP9p/"
OLD_HASH = "$6$oldsalt$Zx8vCq1bXb1wL3w3bQ0mXy8cL2qJ2xv2wKXkX7Q5l1P8sS1kY5jW6m0dR3t4u/"

OS_RELEASE = """PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
ID=debian
HOME_URL="https://www.debian.org/"
"""

DPKG_STATUS = """Package: base-files
Essential: yes
Status: install ok installed
Priority: required
Section: admin
Installed-Size: 341
Maintainer: Santiago Vila <sanvila@debian.org>
Architecture: amd64
Multi-Arch: foreign
Version: 12.4+deb12u5
Description: Debian base system miscellaneous files
 This package contains the basic filesystem hierarchy of a Debian system.

Package: openssh-server
Status: install ok installed
Priority: optional
Section: net
Installed-Size: 1866
Maintainer: Debian OpenSSH Maintainers <debian-ssh@lists.debian.org>
Architecture: amd64
Multi-Arch: foreign
Source: openssh
Version: 1:9.2p1-2+deb12u2
Depends: libc6 (>= 2.36), openssh-client (= 1:9.2p1-2+deb12u2)
Conffiles:
 /etc/default/ssh 500e3a4a4e1d1a3b9d5a5c7b9f1e2d3c
 /etc/ssh/moduli 9a1c0d2e3f4a5b6c7d8e9f0a1b2c3d4e
Description: secure shell (SSH) server, for secure access from remote machines
 This is the portable version of OpenSSH.

Package: chrony
Status: install ok installed
Priority: optional
Section: net
Installed-Size: 1021
Maintainer: Vincent Blut <vincent.debian@free.fr>
Architecture: amd64
Version: 4.3-2+deb12u1
Description: Versatile implementation of the Network Time Protocol

Package: openssl
Status: install ok installed
Priority: optional
Section: utils
Installed-Size: 2277
Maintainer: Debian OpenSSL Team <pkg-openssl-devel@lists.alioth.debian.org>
Architecture: amd64
Version: 3.0.2-0+deb12u1
Description: Secure Sockets Layer toolkit - cryptographic utility

Package: libssl3
Status: install ok installed
Priority: optional
Section: libs
Installed-Size: 6156
Maintainer: Debian OpenSSL Team <pkg-openssl-devel@lists.alioth.debian.org>
Architecture: amd64
Multi-Arch: same
Source: openssl (3.0.2-0+deb12u1)
Version: 3.0.2-0+deb12u1
Description: Secure Sockets Layer toolkit - shared libraries

Package: telnetd
Status: deinstall ok config-files
Priority: optional
Section: net
Architecture: amd64
Source: netkit-telnet
Version: 0.17+2.4-2
Description: removed, only its configuration is left: not installed
"""

PASSWD = """root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
alice:x:1000:1000:Alice,,,:/home/alice:/bin/bash
bob:x:1001:1001:Bob,,,:/home/bob:/bin/zsh
olduser:x:1002:1002::/home/olduser:/bin/bash
svc:x:998:998::/var/lib/svc:/usr/sbin/nologin
nopass:x:1003:1003::/home/nopass:/bin/sh
ghost:x:1004:1004::/home/ghost:/bin/sh
"""

SHADOW = f"""root:{ROOT_HASH}:19700:0:99999:7:::
daemon:*:19700:0:99999:7:::
alice:{SHARED_HASH}:19701:0:99999:7:::
bob:{SHARED_HASH}:19702:0:90:7:::
olduser:{OLD_HASH}:18000:0:60:7::18500:
svc:!{OLD_HASH}:19700::::::
nopass::19703:0:99999:7:::
"""

SSHD_CONFIG = """# sshd_config as Debian ships it, then hardened by a drop-in
Include /etc/ssh/sshd_config.d/*.conf

Port 22
PermitRootLogin yes
PasswordAuthentication yes
KbdInteractiveAuthentication no
UsePAM yes

Match User backup
    PermitRootLogin yes
    X11Forwarding yes
"""

SSHD_DROPIN = """# hardening drop-in: first value wins, so this beats the main file
PermitRootLogin no
X11Forwarding no
"""

CHRONY_CONF = """# Welcome to the chrony configuration file.
confdir /etc/chrony/conf.d
pool 2.debian.pool.ntp.org iburst
server ntp1.example.com iburst prefer
sourcedir /run/chrony-dhcp
driftfile /var/lib/chrony/chrony.drift
"""

INTERFACES = """auto lo
iface lo inet loopback

auto eth0
iface eth0 inet static
    address 192.0.2.10/24
    gateway 192.0.2.1
"""

MACHINE_ID = "4f1c2a9e7b3d4c5e8f90a1b2c3d4e5f6"
KERNELS = ["6.1.0-17-amd64", "6.1.0-18-amd64"]
ENABLED = ["chrony.service", "remote-fs.target", "ssh.service", "systemd-timesyncd.service"]


def write_guest_tree(root: Path) -> dict[str, object]:
    """A small, real Debian-like root filesystem; returns what the tests should find."""

    def put(rel: str, text: str, mode: int = 0o644) -> Path:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(mode)
        return path

    def link(rel: str, target: str) -> None:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(target)

    put("etc/os-release", OS_RELEASE)
    put("etc/hostname", "web01\n")
    put("etc/machine-id", MACHINE_ID + "\n")
    put("var/lib/dpkg/status", DPKG_STATUS)
    put("etc/passwd", PASSWD)
    put("etc/shadow", SHADOW, 0o640)
    put("etc/ssh/sshd_config", SSHD_CONFIG)
    put("etc/ssh/sshd_config.d/50-hardening.conf", SSHD_DROPIN)
    put("etc/chrony/chrony.conf", CHRONY_CONF)
    put("etc/chrony/sources.d/site.sources", "server ntp2.example.com iburst\n")
    put("usr/sbin/chronyd", "#!/bin/false\n", 0o755)
    put("etc/network/interfaces", INTERFACES)
    put("boot/vmlinuz-6.1.0-18-amd64", "kernel")
    (root / "lib/modules/6.1.0-17-amd64").mkdir(parents=True)
    (root / "lib/modules/6.1.0-18-amd64").mkdir(parents=True)
    wants = "etc/systemd/system/multi-user.target.wants"
    link(f"{wants}/ssh.service", "/lib/systemd/system/ssh.service")
    link(f"{wants}/chrony.service", "/lib/systemd/system/chrony.service")
    link(f"{wants}/remote-fs.target", "/lib/systemd/system/remote-fs.target")
    link(
        "etc/systemd/system/sysinit.target.wants/systemd-timesyncd.service",
        "/lib/systemd/system/systemd-timesyncd.service",
    )
    link("etc/systemd/system/sshd.service", "/lib/systemd/system/ssh.service")  # an alias
    (root / "var/tmp").mkdir(parents=True, exist_ok=True)
    keys = []
    for key_type, keep_pub in (("ed25519", True), ("rsa", True), ("ecdsa", False)):
        path = root / f"etc/ssh/ssh_host_{key_type}_key"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", key_type, "-N", "", "-C", "root@web01", "-f", str(path)],
            check=True,
            capture_output=True,
        )
        out = subprocess.run(
            ["ssh-keygen", "-l", "-f", str(path) + ".pub"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
        keys.append({"fingerprint": out[1], "path": f"/etc/ssh/ssh_host_{key_type}_key"})
        if not keep_pub:
            (root / f"etc/ssh/ssh_host_{key_type}_key.pub").unlink()
    return {"host_keys": keys}


def mkfs_ext4(image: Path, tree: Path, *, size_mb: int = 48, offset: int = 0) -> None:
    """``mkfs.ext4 -d`` a tree into ``image`` (at ``offset`` bytes, for a partition)."""
    args = ["mkfs.ext4", "-F", "-q", "-d", str(tree)]
    if offset:
        args += ["-E", f"offset={offset}"]
    subprocess.run([*args, str(image), f"{size_mb}M"], check=True, capture_output=True)


def partitioned(image: Path, tree: Path, label: str, *, size_mb: int = 64) -> None:
    """A disk with a partition table (``dos`` or ``gpt``) and ext4 in its one partition."""
    with image.open("wb") as f:
        f.truncate(size_mb * MIB)
    script = f"label: {label}\nstart=2048, size={(size_mb - 8) * 2048}, type=linux\n"
    if label == "gpt":
        script = script.replace("type=linux", "type=0FC63DAF-8483-4772-8E79-3D69D8477DE4")
    else:
        script = script.replace("type=linux", "type=83")
    subprocess.run(["sfdisk", "-q", str(image)], input=script, text=True, check=True)
    mkfs_ext4(image, tree, size_mb=size_mb - 8, offset=2048 * 512)


class GuestImages:
    """Every layout of the same guest tree, so each must yield exactly the same facts."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tree = root / "tree"
        self.expected = write_guest_tree(self.tree)
        self.raw = root / "whole.raw"
        mkfs_ext4(self.raw, self.tree)
        self.mbr = root / "mbr.raw"
        partitioned(self.mbr, self.tree, "dos")
        self.gpt = root / "gpt.raw"
        partitioned(self.gpt, self.tree, "gpt")
        self.qcow2 = root / "gpt.qcow2"
        qemu_img("convert", "-q", "-f", "raw", "-O", "qcow2", self.gpt, self.qcow2)
        self.vmdk = root / "mbr.vmdk"
        qemu_img("convert", "-q", "-f", "raw", "-O", "vmdk", self.mbr, self.vmdk)
        self.vhdx = root / "whole.vhdx"
        qemu_img("convert", "-q", "-f", "raw", "-O", "vhdx", self.raw, self.vhdx)
        # A linked clone whose overlay changes nothing: all reads fall through to the base.
        self.clone = root / "clones" / "web02.qcow2"
        self.clone.parent.mkdir()
        qemu_img("create", "-q", "-f", "qcow2", "-b", "../gpt.qcow2", "-F", "qcow2", self.clone)
        self.btrfs = root / "whole.btrfs"
        self.btrfs_ok = _mkfs_btrfs(self.btrfs, self.tree)

    @property
    def layouts(self) -> dict[str, Path]:
        found = {
            "raw": self.raw,
            "mbr": self.mbr,
            "gpt": self.gpt,
            "qcow2": self.qcow2,
            "vmdk": self.vmdk,
            "vhdx": self.vhdx,
            "clone": self.clone,
        }
        if self.btrfs_ok:
            found["btrfs"] = self.btrfs
        return found


def _mkfs_btrfs(image: Path, tree: Path) -> bool:
    if not shutil.which("mkfs.btrfs"):
        return False
    with image.open("wb") as f:
        f.truncate(128 * MIB)
    done = subprocess.run(
        ["mkfs.btrfs", "-q", "-f", "--rootdir", str(tree), str(image)],
        check=False,
        capture_output=True,
    )
    return done.returncode == 0


@pytest.fixture(scope="session")
def guest_images(tmp_path_factory: pytest.TempPathFactory) -> GuestImages:
    return GuestImages(tmp_path_factory.mktemp("guest"))


def build_tree_image(directory: Path, tree: Path, name: str = "disk.qcow2") -> Path:
    """A one-off guest: ext4 of ``tree`` converted to qcow2 in ``directory``."""
    raw = directory / (name + ".raw")
    mkfs_ext4(raw, tree, size_mb=16)
    out = directory / name
    qemu_img("convert", "-q", "-f", "raw", "-O", "qcow2", raw, out)
    raw.unlink()
    return out


DEBIAN_IMAGE = Path(
    os.environ.get("VMWARDEN_DEBIAN_IMAGE", "/var/cache/vmwarden-test/debian-minbase.qcow2")
)


@pytest.fixture(scope="session")
def debian_image() -> Path:
    """The real debootstrap image (built once per machine by scripts/build-debian-image.sh)."""
    script = Path(__file__).resolve().parents[2] / "scripts" / "build-debian-image.sh"
    if not DEBIAN_IMAGE.exists():
        done = subprocess.run(
            ["bash", str(script), str(DEBIAN_IMAGE)], check=False, capture_output=True
        )
        if done.returncode != 0:
            pytest.fail(f"cannot build the Debian image: {done.stderr.decode()[-400:]}")
    return DEBIAN_IMAGE


@pytest.fixture(scope="session")
def layout_images(
    guest_images: GuestImages, tmp_path_factory: pytest.TempPathFactory
) -> LayoutImages:
    """LVM and XFS disks of the guest tree (loop devices and LVM: root; built once per run)."""
    try:
        return LayoutImages(tmp_path_factory.mktemp("layouts"), guest_images.tree)
    except (OSError, RuntimeError) as exc:  # missing lvm2/xfsprogs/loop devices: say which
        pytest.fail(f"cannot build the LVM/XFS images (scripts/install-deps.sh, root): {exc}")


@pytest.fixture(scope="session")
def windows_images(tmp_path_factory: pytest.TempPathFactory) -> WindowsImages:
    """Windows Server 2022 on GPT + NTFS, and the same with a corrupt SOFTWARE hive."""
    try:
        return WindowsImages(tmp_path_factory.mktemp("windows"))
    except (OSError, RuntimeError) as exc:  # no ntfs-3g, no FUSE, not root: say which
        pytest.fail(f"cannot build the Windows images (scripts/install-deps.sh, root): {exc}")

"""The demo's disk images: two base images and the linked clones of them.

``build_base`` makes a 64 MiB qcow2 with an MBR and one real ext4 partition holding a tiny
distro tree (``debian12-base``: the approved template; ``random-download``: an unvetted base
with telnetd and netcat), byte-for-byte reproducible: fixed filesystem UUID, hash seed and
inode times, so the template digest is the same on every build. ``clone`` makes a linked
clone with a relative backing path, as ``virt-clone`` users do.

``VARIANTS`` are what owners did inside some clones after cloning (root login turned on and
a key pair copied between two web servers; a forgotten app server never patched, with an
expired contractor account and its time sync disabled). ``write_variant`` puts such a guest
into a linked clone by writing only the clusters that differ from the template into the
overlay (``qemu-io``), so the clone still derives from the approved template.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import uuid
from datetime import UTC, datetime
from pathlib import Path

from vmwarden.errors import VmwardenError

TEMPLATE = "debian12-base"
ROGUE_BASE = "random-download"
VIRTUAL_SIZE = 64 * 1024 * 1024
NAMESPACE = uuid.UUID("6f1c9a52-8d7e-4a53-9d0b-3c5e2f6a7b10")  # of every demo UUID
_FIXED_TIME = 1_700_000_000  # file timestamps inside the template filesystems


def _run(*args: str, env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(args, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise VmwardenError(
            f"{args[0]} failed: {proc.stderr.strip() or proc.returncode}",
            hint="check that qemu-utils and e2fsprogs are installed and the disk is not full",
        )


def clone(path: Path, base: str) -> None:
    """A linked clone, named relative to its own directory (as ``virt-clone`` users do)."""
    backing = f"../templates/{base}.qcow2"
    _run("qemu-img", "create", "-q", "-f", "qcow2", "-b", backing, "-F", "qcow2", str(path))


def build_base(templates: Path, base: str, wd: Path, *, keep_raw: bool = False) -> Path:
    """A 64 MiB disk with an MBR and one ext4 partition holding a tiny distro tree.

    Returns the raw image when ``keep_raw`` (the caller diffs variants against it)."""
    raw = _build_raw(templates / f".{base}.raw", base, _ROOTFS[base], wd)
    _run(
        "qemu-img",
        "convert",
        "-q",
        "-f",
        "raw",
        "-O",
        "qcow2",
        str(raw),
        str(templates / f"{base}.qcow2"),
    )
    if not keep_raw:
        raw.unlink()
    return raw


def build_variant(scratch: Path, variant: str, wd: Path) -> Path:
    """The raw image of the template's tree with ``VARIANTS[variant]`` applied."""
    files = {**_ROOTFS[TEMPLATE], **VARIANTS[variant]}
    files = {k: v for k, v in files.items() if v is not None}
    return _build_raw(scratch / f".{variant}.raw", variant, files, wd, fs_of=TEMPLATE)


def write_variant(clone_path: Path, template_raw: Path, variant_raw: Path) -> int:
    """Write into the linked clone every 64 KiB chunk where the variant differs from the
    template (what the guest wrote after cloning); returns how many chunks were written."""
    chunk = 1 << 16
    cmds: list[str] = []
    parts = clone_path.parent / f".{clone_path.name}.chunks"
    parts.mkdir()
    try:
        with template_raw.open("rb") as a, variant_raw.open("rb") as b:
            offset = 0
            while block := b.read(chunk):
                if block != a.read(chunk):
                    part = parts / str(offset)
                    part.write_bytes(block)
                    cmds += ["-c", f"write -q -s {part} {offset} {len(block)}"]
                offset += len(block)
        if cmds:
            _run("qemu-io", "-f", "qcow2", *cmds, str(clone_path))
    finally:
        shutil.rmtree(parts)
    return len(cmds) // 2


def _build_raw(
    raw: Path, name: str, files: dict[str, str], wd: Path, *, fs_of: str | None = None
) -> Path:
    """An MBR + ext4 raw image of ``files``; ``fs_of`` borrows another image's filesystem
    UUID and label, as a clone keeps its template's."""
    base = fs_of or name
    tree = wd / f".tree-{name}"
    if tree.exists():
        shutil.rmtree(tree)
    _write_tree(tree, files)
    with raw.open("wb") as f:
        f.truncate(VIRTUAL_SIZE)
        f.write(_mbr(VIRTUAL_SIZE))
    fs_id = str(uuid.uuid5(NAMESPACE, base))
    mkfs = shutil.which("mkfs.ext4") or shutil.which("mkfs.ext4", path="/usr/sbin:/sbin")
    if mkfs:
        env = {**os.environ, "E2FSPROGS_FAKE_TIME": str(_FIXED_TIME)}
        _run(
            mkfs, "-q", "-F", "-L", base[:16], "-U", fs_id,
            "-E", f"offset={1 << 20},hash_seed={fs_id},root_owner=0:0",
            "-d", str(tree), str(raw), f"{(VIRTUAL_SIZE >> 10) - 1024}k",
            env=env,
        )  # fmt: skip
        _pin_inode_times(raw, tree, env)
    else:  # no e2fsprogs: still distinct, deterministic images
        with raw.open("r+b") as f:
            f.seek(1 << 20)
            f.write(f"vmwarden demo base image {name}\n".encode())
    shutil.rmtree(tree)
    return raw


def _pin_inode_times(raw: Path, tree: Path, env: dict[str, str]) -> None:
    """Set ctime/crtime of every inode: ``mkfs -d`` copies them from the build tree (where
    they are "now" and cannot be set), which would change the template digest per build."""
    debugfs = shutil.which("debugfs") or shutil.which("debugfs", path="/usr/sbin:/sbin")
    if debugfs is None:
        return
    stamp = datetime.fromtimestamp(_FIXED_TIME, UTC).strftime("%Y%m%d%H%M%S")
    inodes = ["/", "/lost+found"] + [f"/{p.relative_to(tree)}" for p in sorted(tree.rglob("*"))]
    script = raw.with_suffix(".debugfs")
    script.write_text(
        "".join(f'sif "{i}" {field} {stamp}\n' for i in inodes for field in ("ctime", "crtime"))
    )
    _run(debugfs, "-w", "-f", str(script), f"{raw}?offset={1 << 20}", env=env)
    script.unlink()


def _mbr(size: int) -> bytes:
    """A DOS partition table with one Linux partition from 1 MiB to the end."""
    start = 2048
    entry = struct.pack(
        "<B3sB3sII", 0, b"\xfe\xff\xff", 0x83, b"\xfe\xff\xff", start, size // 512 - start
    )
    return b"\x00" * 440 + b"VMWD" + b"\x00\x00" + entry + b"\x00" * 48 + b"\x55\xaa"


def _write_tree(root: Path, files: dict[str, str]) -> None:
    """Files from text; a value ``"-> TARGET"`` is a symlink (as ``systemctl enable`` makes)."""
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if text.startswith("-> "):
            p.symlink_to(text[3:])
            continue
        p.write_text(text, encoding="utf-8")
        if rel == "etc/shadow":
            p.chmod(0o640)
        elif rel.endswith("_key"):
            p.chmod(0o600)
    # mkfs -d copies timestamps; fixed ones make the image (and its digest) reproducible.
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in [*filenames, *dirnames, ""]:
            where = os.path.join(dirpath, name) if name else dirpath
            os.utime(where, (_FIXED_TIME, _FIXED_TIME), follow_symlinks=False)


def _dpkg_status(packages: dict[str, str]) -> str:
    return "".join(
        f"Package: {name}\nStatus: install ok installed\nPriority: optional\n"
        + (f"Source: {_SOURCES[name]}\n" if name in _SOURCES else "")
        + f"Architecture: amd64\nVersion: {version}\nDescription: {name}\n\n"
        for name, version in packages.items()
    )


# binary package → source package, as Debian's dpkg status says (advisories name sources)
_SOURCES = {"openssh-server": "openssh", "telnetd": "inetutils", "netcat-traditional": "netcat"}


_WANTS = "etc/systemd/system/multi-user.target.wants/"
_PASSWD = (
    "root:x:0:0:root:/root:/bin/bash\n"
    "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
    "sshd:x:100:65534::/run/sshd:/usr/sbin/nologin\n"
)
_TEMPLATE_PACKAGES = {
    "base-files": "12.4+deb12u5",
    "openssh-server": "1:9.2p1-2+deb12u2",
    "chrony": "4.3-2+deb12u1",
    "openssl": "3.0.11-1~deb12u2",
    "sudo": "1.9.13p3-1+deb12u1",
}
_ROOTFS: dict[str, dict[str, str]] = {
    TEMPLATE: {
        "etc/os-release": (
            'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\n'
            'VERSION_ID="12"\nVERSION="12 (bookworm)"\nVERSION_CODENAME=bookworm\nID=debian\n'
        ),
        "etc/debian_version": "12.5\n",
        "etc/hostname": "debian12-base\n",
        "etc/machine-id": "",  # empty: a clean template, each clone gets its own
        "etc/passwd": _PASSWD,
        "etc/shadow": (
            "root:*:19700:0:99999:7:::\ndaemon:*:19700:0:99999:7:::\nsshd:!:19700::::::\n"
        ),
        "etc/ssh/sshd_config": "PermitRootLogin no\nPasswordAuthentication no\n",
        "etc/chrony/chrony.conf": "pool 2.debian.pool.ntp.org iburst\n",
        "lib/systemd/system/chrony.service": "[Service]\nExecStart=/usr/sbin/chronyd -F 1\n",
        "lib/systemd/system/ssh.service": "[Service]\nExecStart=/usr/sbin/sshd -D\n",
        _WANTS + "chrony.service": "-> /lib/systemd/system/chrony.service",
        _WANTS + "ssh.service": "-> /lib/systemd/system/ssh.service",
        "var/lib/dpkg/status": _dpkg_status(_TEMPLATE_PACKAGES),
    },
    ROGUE_BASE: {
        "etc/os-release": (
            'PRETTY_NAME="Ubuntu 20.04.1 LTS"\nNAME="Ubuntu"\nVERSION_ID="20.04"\n'
            'VERSION="20.04.1 LTS (Focal Fossa)"\nID=ubuntu\nID_LIKE=debian\n'
        ),
        "etc/hostname": "ubuntu\n",
        "etc/machine-id": "4f2ab0c9d1e84b7a9c3e5d6f7a8b9c0d\n",
        "etc/passwd": _PASSWD + "ubuntu:x:1000:1000:Ubuntu:/home/ubuntu:/bin/bash\n",
        "etc/shadow": (
            "root:$6$demo$8Jc1bIvpM0cZkPp1fUQ0aG2m1H9h8QnW7rK3dE5sT6uV7wX8yZ9aB0cD1eF2gH3iJ4"
            "kL5mN6oP7qR8sT9uV0w:18500:0:99999:7:::\ndaemon:*:18500:0:99999:7:::\n"
            "sshd:*:18500:0:99999:7:::\nubuntu:$6$demo$x:18500:0:99999:7:::\n"
        ),
        "etc/ssh/sshd_config": "PermitRootLogin yes\nPasswordAuthentication yes\n",
        "var/lib/dpkg/status": _dpkg_status(
            {
                "base-files": "11ubuntu5.1",
                "openssh-server": "1:8.2p1-4",
                "openssl": "1.1.1f-1ubuntu2",
                "telnetd": "0.17-41.2build1",
                "netcat-traditional": "1.10-41.1",
            }
        ),
    },
}

# A key pair copied from one web server to the other, and the same root password set on both.
_COPIED_HOST_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHZtd2FyZGVuLWRlbW8tY29waWVkLWhvc3Qta2V5LTAx "
    "root@web-legacy\n"
)
_ROOT_HASH = (
    "$6$Wq3v9dQe$Yp0Jk2LxV4mN8rT1sU6wZ3aB7cD9eF0gH2iJ5kL8mN1oP4qR7sT0uV3wX6yZ9aB2cD5eF8gH1iJ4"
    "kL7mN0oP"
)
# Path → new text (None: removed), applied to the template's tree inside some clones.
VARIANTS: dict[str, dict[str, str | None]] = {
    "web-legacy": {
        "etc/ssh/sshd_config": "PermitRootLogin yes\nPasswordAuthentication yes\n",
        "etc/ssh/ssh_host_ed25519_key": (
            "-----BEGIN OPENSSH PRIVATE KEY-----\n(demo: copied with its .pub)\n"
            "-----END OPENSSH PRIVATE KEY-----\n"
        ),
        "etc/ssh/ssh_host_ed25519_key.pub": _COPIED_HOST_KEY,
        "etc/shadow": (
            f"root:{_ROOT_HASH}:19700:0:99999:7:::\n"
            "daemon:*:19700:0:99999:7:::\nsshd:!:19700::::::\n"
        ),
    },
    "app-unpatched": {
        "etc/hostname": "app-unpatched\n",
        # openssh left at the version before DSA-5586-1; chrony removed, so no time sync
        "var/lib/dpkg/status": _dpkg_status(
            {k: v for k, v in _TEMPLATE_PACKAGES.items() if k != "chrony"}
            | {"openssh-server": "1:9.2p1-2+deb12u1"}
        ),
        _WANTS + "chrony.service": None,
        "etc/chrony/chrony.conf": None,
        "lib/systemd/system/chrony.service": None,
        "etc/passwd": _PASSWD + "contractor:x:1001:1001::/home/contractor:/bin/bash\n",
        # the contractor's account expired on day 19500 (2023-05-23) and nobody locked it
        "etc/shadow": (
            "root:*:19700:0:99999:7:::\ndaemon:*:19700:0:99999:7:::\nsshd:!:19700::::::\n"
            f"contractor:{_ROOT_HASH[:20]}cOnTrAcToR:19000:0:90:7::19500:\n"
        ),
    },
}

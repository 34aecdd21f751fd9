"""A Windows guest disk as the inspector meets one: GPT, an NTFS data partition, and the
registry hives Windows keeps in ``Windows\\System32\\config``.

Built with the real tools: ``mkntfs`` formats the partition, ``ntfs-3g`` (FUSE; root, as CI
runs) mounts the partition file so the tree is copied in by the kernel's ordinary file
calls, then ``sfdisk`` lays a GPT whose "Microsoft basic data" partition receives it, and
``qemu-img`` converts the disk to qcow2. The hives are real regf files written by
:mod:`tests.inspect.regf` with the keys Windows Server 2022 has where vmwarden (and dissect)
look: the version under ``SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion``, the computer
name under the current control set, accounts in ``ProfileList``, programs under
``Uninstall`` (native and ``WOW6432Node``), and the installation's ``MachineGuid``.
"""

from __future__ import annotations

import os
import random
import subprocess
import time
from pathlib import Path

from tests.conftest import qemu_img
from tests.inspect.regf import Expand, Tree, write_hive

MIB = 1024 * 1024
BASIC_DATA = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"  # GPT type of an NTFS data partition
DOMAIN_SID = "S-1-5-21-3623811015-3361044348-30300820"
MACHINE_GUID = "6f1c8e52-3b0a-4c47-9d2e-0a5b7c3e91d4"
HOSTNAME = "WIN-VMW01"
PRODUCT = "Windows Server 2022 Standard"
VERSION = "10.0.20348.2227"  # what ``ver`` prints: NT major.minor, build, update revision

#: What the inspector must find: (name, version, arch) of each program shown in
#: "Programs and Features" (a SystemComponent and a nameless entry are not).
PROGRAMS = [
    ("7-Zip 23.01 (x64)", "23.01", None),
    ("Notepad++ (32-bit x86)", "8.6.2", "x86"),
    ("PuTTY release 0.76 (64-bit)", "0.76.0.0", None),
]
#: (name, home, sid) of every ProfileList entry, well-known service accounts included.
PROFILES = [
    ("SYSTEM", r"C:\Windows\system32\config\systemprofile", "S-1-5-18"),
    ("LOCAL SERVICE", r"C:\Windows\ServiceProfiles\LocalService", "S-1-5-19"),
    ("NETWORK SERVICE", r"C:\Windows\ServiceProfiles\NetworkService", "S-1-5-20"),
    ("Administrator", r"C:\Users\Administrator", f"{DOMAIN_SID}-500"),
    ("alice", r"C:\Users\alice", f"{DOMAIN_SID}-1001"),
]


def software_hive() -> Tree:
    """SOFTWARE as Windows Server 2022 (build 20348, update 2227) leaves it."""
    current = {
        "ProductName": PRODUCT,
        "EditionID": "ServerStandard",
        "InstallationType": "Server",
        "CurrentVersion": "6.3",  # frozen at 6.3 since Windows 10; the real one is below
        "CurrentMajorVersionNumber": 10,
        "CurrentMinorVersionNumber": 0,
        "CurrentBuild": "20348",
        "CurrentBuildNumber": "20348",
        "UBR": 2227,
        "DisplayVersion": "21H2",
        "SystemRoot": r"C:\Windows",
        "ProfileList": {sid: _profile(home) for _, home, sid in PROFILES},
    }
    uninstall: Tree = {
        "7-Zip": {"DisplayName": "7-Zip 23.01 (x64)", "DisplayVersion": "23.01",
                  "Publisher": "Igor Pavlov", "InstallLocation": "C:\\Program Files\\7-Zip\\"},
        "{45B3032F-22CC-40CD-9E97-4DA7095FA5A2}": {
            "DisplayName": "PuTTY release 0.76 (64-bit)", "DisplayVersion": "0.76.0.0",
            "Publisher": "Simon Tatham", "InstallDate": "20240115"},
        "{5FCE6D76-F5DC-37AB-B2B8-22AB8CEDB1D4}": {  # an update: not shown, not a program
            "DisplayName": "Microsoft Edge Update Helper", "DisplayVersion": "1.3.183.29",
            "SystemComponent": 1},
        "Connection Manager": {"SystemComponent": 1},  # no DisplayName: not a program
    }  # fmt: skip
    wow = {"Notepad++": {"DisplayName": "Notepad++ (32-bit x86)", "DisplayVersion": "8.6.2"}}
    return {
        "Microsoft": {
            "Windows NT": {"CurrentVersion": current},
            "Windows": {"CurrentVersion": {"Uninstall": uninstall}},
            "Cryptography": {"MachineGuid": MACHINE_GUID},
        },
        "WOW6432Node": {"Microsoft": {"Windows": {"CurrentVersion": {"Uninstall": wow}}}},
    }


def _profile(home: str) -> Tree:
    """A ProfileList entry; Windows stores system paths with ``%SystemRoot%`` unexpanded."""
    path = Expand(home.replace("C:\\Windows", "%SystemRoot%"))
    return {"ProfileImagePath": path, "Flags": 0, "State": 0}


def system_hive() -> Tree:
    """SYSTEM with one control set (``Select\\Current`` = 1), as after a clean install."""
    control = {
        "ComputerName": {
            "ComputerName": {"ComputerName": HOSTNAME},
            "ActiveComputerName": {"ComputerName": HOSTNAME},
        },
        "Session Manager": {"Environment": {"PROCESSOR_ARCHITECTURE": "AMD64"}},
    }
    tcpip = {"Parameters": {"Hostname": HOSTNAME.lower(), "Domain": ""}}
    return {
        "Select": {"Current": 1, "Default": 1, "LastKnownGood": 1, "Failed": 0},
        "ControlSet001": {"Control": control, "Services": {"Tcpip": tcpip}},
    }


def write_windows_tree(root: Path, *, software: bytes | None = None) -> None:
    """The system volume's files; ``software`` replaces the SOFTWARE hive's bytes."""
    config = root / "Windows" / "System32" / "config"
    config.mkdir(parents=True)
    name = "\\SystemRoot\\System32\\Config\\"  # what Windows writes in the base block
    write_hive(config / "SYSTEM", system_hive(), name=name + "SYSTEM")
    if software is None:
        write_hive(config / "SOFTWARE", software_hive(), name=name + "SOFTWARE")
    else:
        (config / "SOFTWARE").write_bytes(software)
    (config / "RegBack").mkdir()
    etc = root / "Windows" / "System32" / "drivers" / "etc"
    etc.mkdir(parents=True)
    (etc / "hosts").write_text("# Copyright (c) 1993-2009 Microsoft Corp.\r\n")
    (root / "Windows" / "explorer.exe").write_bytes(b"MZ" + bytes(510))
    for _, home, _ in PROFILES[3:]:
        (root / home[3:].replace("\\", "/") / "Desktop").mkdir(parents=True)
    (root / "Program Files" / "7-Zip").mkdir(parents=True)
    (root / "Program Files" / "7-Zip" / "7z.exe").write_bytes(b"MZ" + bytes(254))


def ntfs_partition(image: Path, tree: Path, *, size_mb: int, start_sector: int) -> None:
    """``mkntfs`` a partition file and copy ``tree`` in through an ``ntfs-3g`` mount."""
    with image.open("wb") as f:
        f.truncate(size_mb * MIB)
    _run("mkntfs", "-Q", "-q", "-F", "-L", "Windows", "-p", str(start_sector), "-H", "255",
         "-S", "63", image)  # fmt: skip
    mountpoint = image.with_suffix(".mnt")
    mountpoint.mkdir()
    # no_detach: ntfs-3g stays our child, so waiting for it means every write reached the file.
    log = image.with_suffix(".ntfs-3g.log")
    with log.open("wb") as out:  # a file, not a pipe: a chatty daemon never blocks on it
        daemon = subprocess.Popen(
            ["ntfs-3g", "-o", "no_detach", str(image), str(mountpoint)], stdout=out, stderr=out
        )
    try:
        _wait_mounted(mountpoint, daemon, log)
        _run("cp", "-r", f"{tree}/.", mountpoint)
    finally:
        if os.path.ismount(mountpoint):
            _run("umount", mountpoint)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        mountpoint.rmdir()
    if daemon.returncode != 0:
        raise RuntimeError(f"ntfs-3g exited {daemon.returncode}: {_tail(log)}")
    log.unlink()


def windows_disk(directory: Path, tree: Path, name: str, *, size_mb: int = 40) -> Path:
    """A GPT disk whose one basic-data partition is NTFS of ``tree``, as qcow2."""
    start = 2048
    part_mb = size_mb - 2
    part = directory / f"{name}.part"
    ntfs_partition(part, tree, size_mb=part_mb, start_sector=start)
    raw = directory / f"{name}.raw"
    with raw.open("wb") as f:
        f.truncate(size_mb * MIB)
    script = f"label: gpt\nstart={start}, size={part_mb * 2048}, type={BASIC_DATA}\n"
    subprocess.run(["sfdisk", "-q", str(raw)], input=script, text=True, check=True)
    with part.open("rb") as src, raw.open("r+b") as dst:
        dst.seek(start * 512)
        while chunk := src.read(4 * MIB):
            dst.write(chunk)
    part.unlink()
    out = directory / f"{name}.qcow2"
    qemu_img("convert", "-q", "-f", "raw", "-O", "qcow2", raw, out)
    raw.unlink()
    return out


class WindowsImages:
    """The Windows guest, and the same guest with a corrupt SOFTWARE hive: ``broken``
    maps ``random`` (64 KiB of random bytes) and ``regf-header`` (a hive's signature, then
    random bytes: the parser gets past its first check) to their disks."""

    def __init__(self, root: Path) -> None:
        self.root = root
        noise = random.Random(20348).randbytes(64 * 1024)  # seeded: a failure reproduces
        trees = {"good": None, "random": noise, "regf-header": b"regf" + noise}
        disks = {}
        for label, software in trees.items():
            tree = root / f"tree-{label}"
            write_windows_tree(tree, software=software)
            disks[label] = windows_disk(root, tree, f"win2022-{label}")
        self.disk = disks.pop("good")
        self.broken = disks


def _wait_mounted(mountpoint: Path, daemon: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while not os.path.ismount(mountpoint):
        if daemon.poll() is not None:
            raise RuntimeError(f"ntfs-3g could not mount: {_tail(log)}")
        if time.monotonic() > deadline:
            raise RuntimeError("ntfs-3g did not mount within 20 s")
        time.sleep(0.02)


def _tail(log: Path) -> str:
    return log.read_text(errors="replace").strip()[-400:]


def _run(*args: str | Path) -> None:
    done = subprocess.run([str(a) for a in args], check=False, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))}: {done.stderr.strip()[-400:]}")

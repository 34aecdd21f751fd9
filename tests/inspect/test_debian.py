"""A real Debian 12 (debootstrap --variant=minbase bookworm, GPT + ext4, qcow2)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.inspect.conftest import KEY
from vmwarden.inspect.facts import inspect_image
from vmwarden.inspect.sandbox import InspectorPool


def test_real_debian_minbase(debian_image: Path) -> None:
    with InspectorPool(workers=1, allowed_dirs=[debian_image.parent], fingerprint_key=KEY) as pool:
        facts = pool.inspect(debian_image)
    assert facts.errors == []
    assert (facts.os_family, facts.os_name, facts.os_version) == ("linux", "debian", "12")
    assert facts.os_pretty == "Debian GNU/Linux 12 (bookworm)"
    assert facts.filesystems == ["ext"]
    packages = {p.name: p for p in facts.packages or []}
    # minbase is small (~90 packages: Essential + Priority required + apt).
    assert len(packages) > 80
    for name in (
        "base-files",
        "dpkg",
        "apt",
        "libc6",
        "bash",
        "coreutils",
        "debian-archive-keyring",
    ):
        assert name in packages
    assert packages["base-files"].version.startswith("12.")
    assert packages["libc6"].source == "glibc"
    assert all(p.manager == "dpkg" and p.arch for p in packages.values())
    users = {u.name: u for u in facts.users or []}
    assert {"root", "daemon", "bin", "sys", "nobody", "_apt"} <= set(users)
    assert users["root"].uid == 0 and users["root"].shell == "/bin/bash"
    assert users["root"].password == "locked"  # debootstrap leaves root's password "*"
    assert all(u.password_fingerprint is None for u in users.values())
    assert facts.hostname == "vmwarden-debian"
    assert facts.sshd is None and facts.ssh_host_keys is None  # no openssh in minbase


def test_in_process_and_pool_agree_on_debian(debian_image: Path) -> None:
    local = inspect_image(debian_image, allowed_dirs=[debian_image.parent], fingerprint_key=KEY)
    assert local.os_version == "12"
    assert len(local.packages or []) > 80


def test_debian_inspection_reads_under_two_percent_of_the_image(debian_image: Path) -> None:
    """Issue 6: bytes read from the host vs the image file (and vs the virtual disk)."""
    with InspectorPool(workers=1, allowed_dirs=[debian_image.parent], fingerprint_key=KEY) as pool:
        facts = pool.inspect(debian_image)
        stats = pool.stats[str(debian_image)]
    assert len(facts.packages or []) > 80
    assert stats["image_bytes"] == debian_image.stat().st_size
    info = subprocess.run(
        ["qemu-img", "info", "--output=json", str(debian_image)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    assert stats["virtual_bytes"] == json.loads(info.stdout)["virtual-size"]
    assert 0 < stats["bytes_read"] < 0.02 * stats["image_bytes"]

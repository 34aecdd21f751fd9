"""Guest facts read from real images (every layout of one guest tree) match what was put in."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from tests.inspect.conftest import (
    ENABLED,
    KERNELS,
    KEY,
    MACHINE_ID,
    SHARED_HASH,
    GuestImages,
)
from vmwarden.inspect.facts import inspect_image
from vmwarden.model import GuestFacts

LAYOUTS = ["raw", "mbr", "gpt", "qcow2", "vmdk", "vhdx", "clone"]


def _fp(hash_: str) -> str:
    return "hmac-sha256:" + hmac.new(KEY, hash_.encode(), hashlib.sha256).hexdigest()


@pytest.fixture(scope="module")
def facts_by_layout(guest_images: GuestImages) -> dict[str, GuestFacts]:
    return {
        name: inspect_image(path, allowed_dirs=[guest_images.root], fingerprint_key=KEY)
        for name, path in guest_images.layouts.items()
        if name in LAYOUTS
    }


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_reads_the_same_guest(
    facts_by_layout: dict[str, GuestFacts], guest_images: GuestImages, layout: str
) -> None:
    facts = facts_by_layout[layout]
    assert facts.errors == []
    assert facts.image == str(guest_images.layouts[layout])
    assert (facts.os_family, facts.os_name, facts.os_version) == ("linux", "debian", "12")
    assert facts.os_pretty == "Debian GNU/Linux 12 (bookworm)"
    assert facts.hostname == "web01"
    assert facts.machine_id == MACHINE_ID
    assert facts.kernels == KERNELS
    assert facts.encrypted is False
    assert facts.filesystems == ["ext"]
    reference = facts_by_layout["raw"].to_dict()
    mine = facts.to_dict()
    for volatile in ("image", "identity", "inspected_at", "seconds"):
        reference.pop(volatile)
        mine.pop(volatile)
    assert mine == reference


def test_packages_from_dpkg_status(facts_by_layout: dict[str, GuestFacts]) -> None:
    packages = {p.name: p for p in facts_by_layout["qcow2"].packages or []}
    # telnetd is only "deinstall ok config-files": not installed.
    assert sorted(packages) == ["base-files", "chrony", "libssl3", "openssh-server", "openssl"]
    ssh = packages["openssh-server"]
    assert (ssh.version, ssh.arch, ssh.source, ssh.manager) == (
        "1:9.2p1-2+deb12u2",
        "amd64",
        "openssh",
        "dpkg",
    )
    assert packages["libssl3"].source == "openssl"  # "openssl (3.0.2-0+deb12u1)": name only
    assert packages["openssl"].version == "3.0.2-0+deb12u1"
    assert packages["openssl"].source == "openssl"  # no Source: field → its own name


def test_users_and_password_states(facts_by_layout: dict[str, GuestFacts]) -> None:
    users = {u.name: u for u in facts_by_layout["qcow2"].users or []}
    assert list(users) == ["root", "daemon", "alice", "bob", "olduser", "svc", "nopass", "ghost"]
    assert (users["alice"].uid, users["alice"].gid) == (1000, 1000)
    assert (users["bob"].shell, users["bob"].home) == ("/bin/zsh", "/home/bob")
    # Two users sharing one hash share one fingerprint; the hash itself is nowhere.
    assert users["alice"].password == users["bob"].password == "hash"
    assert users["alice"].password_fingerprint == users["bob"].password_fingerprint
    assert users["alice"].password_fingerprint == _fp(SHARED_HASH)
    assert users["root"].password_fingerprint != users["alice"].password_fingerprint
    text = str(facts_by_layout["qcow2"].to_dict())
    assert SHARED_HASH not in text and SHARED_HASH.split("$")[-1] not in text
    # Locked: "*" and "!<hash>" (a locked hash is never fingerprinted); empty; no entry.
    assert (users["daemon"].password, users["daemon"].password_fingerprint) == ("locked", None)
    assert (users["svc"].password, users["svc"].password_fingerprint) == ("locked", None)
    assert users["nopass"].password == "empty"
    assert users["ghost"].password == "none"
    # The expired account: shadow days since 1970 as ISO dates.
    old = users["olduser"]
    assert (old.last_change, old.max_days, old.expires) == ("2019-04-14", 60, "2020-08-26")
    assert (users["bob"].last_change, users["bob"].max_days) == ("2023-12-11", 90)
    assert users["alice"].expires is None


def test_services_sshd_keys_timesync_network(
    facts_by_layout: dict[str, GuestFacts], guest_images: GuestImages
) -> None:
    facts = facts_by_layout["qcow2"]
    assert facts.services_enabled == ENABLED  # the sshd.service alias is not a wants link
    # The drop-in is included first, so its PermitRootLogin wins; Match blocks are skipped.
    assert facts.sshd is not None
    assert facts.sshd["permitrootlogin"] == "no"
    assert facts.sshd["passwordauthentication"] == "yes"
    assert facts.sshd["x11forwarding"] == "no"
    assert "include" not in facts.sshd
    keys = sorted((k.path, k.fingerprint) for k in facts.ssh_host_keys or [])
    expected = sorted((k["path"], k["fingerprint"]) for k in guest_images.expected["host_keys"])
    assert keys == expected  # the ecdsa key has no .pub: read from the private key file
    assert {k.type for k in facts.ssh_host_keys or []} == {
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
    }
    sync = facts.time_sync or {}
    assert (sync["chrony"], sync["ntp"], sync["timesyncd"]) == (True, False, False)
    assert sync["installed"] == ["chrony"]
    assert sync["enabled"] == ["chrony", "timesyncd"]  # enabled, but its binary is absent
    assert sync["servers"] == {
        "chrony": ["2.debian.pool.ntp.org", "ntp1.example.com", "ntp2.example.com"]
    }
    assert facts.network == [
        {
            "source": "ifupdown",
            "name": "lo",
            "method": "loopback",
            "addresses": [],
            "gateway": None,
        },
        {
            "source": "ifupdown",
            "name": "eth0",
            "method": "static",
            "addresses": ["192.0.2.10/24"],
            "gateway": "192.0.2.1",
        },
    ]


def test_identity_of_a_linked_clone_names_both_layers(
    facts_by_layout: dict[str, GuestFacts], guest_images: GuestImages
) -> None:
    layers = (facts_by_layout["clone"].identity or {})["layers"]
    assert [layer["path"] for layer in layers] == [
        str(guest_images.clone),
        str(guest_images.qcow2),
    ]


def test_clone_backing_outside_allowed_dirs_is_refused(guest_images: GuestImages) -> None:
    from vmwarden.errors import InspectError

    with pytest.raises(InspectError, match="outside allowed directories"):
        inspect_image(
            guest_images.clone, allowed_dirs=[guest_images.clone.parent], fingerprint_key=KEY
        )


def test_btrfs_is_opened(guest_images: GuestImages) -> None:
    """btrfs is recognised; dissect.btrfs 1.10 does not yet find files by name in images
    made by ``mkfs.btrfs --rootdir`` (listing works), so only the filesystem is asserted."""
    assert "btrfs" in guest_images.layouts, "mkfs.btrfs missing (scripts/install-deps.sh)"
    facts = inspect_image(guest_images.btrfs, allowed_dirs=[guest_images.root], fingerprint_key=KEY)
    assert facts.filesystems == ["btrfs"]


def test_fingerprints_depend_on_the_key(guest_images: GuestImages) -> None:
    other = inspect_image(
        guest_images.raw, allowed_dirs=[guest_images.root], fingerprint_key=b"\x01" * 32
    )
    alice = next(u for u in other.users or [] if u.name == "alice")
    assert alice.password_fingerprint != _fp(SHARED_HASH)

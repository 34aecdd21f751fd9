"""Guest-agent facts: the mapping of a recorded ``guestInfo()`` answer, the channel state in
domain XML, the merge over disk facts, and what a driver without an agent API gives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lxml import etree

from vmwarden.connectors.libvirt.agent import facts_from_info
from vmwarden.connectors.libvirt.agentxml import agent_channel
from vmwarden.connectors.libvirt.connection import LibvirtConnector
from vmwarden.connectors.libvirt.domxml import parse_domain
from vmwarden.model import GuestFacts, Package, State, User
from vmwarden.model.guest import merge_live

# What libvirt 9.0 answered for the test guest of scripts/build-agent-image.sh (qemu-ga 7.2),
# with one logged-in user added the way the agent reports one.
RECORDED: dict[str, Any] = {
    "user.count": 1,
    "user.0.name": "alice",
    "user.0.login-time": 1763895000000,
    "os.id": "debian",
    "os.name": "Debian GNU/Linux",
    "os.pretty-name": "Debian GNU/Linux 12 (bookworm)",
    "os.version": "12 (bookworm)",
    "os.version-id": "12",
    "os.machine": "x86_64",
    "os.kernel-release": "6.1.0-56-cloud-amd64",
    "timezone.name": "UTC",
    "timezone.offset": 0,
    "hostname": "vmw-ga-live",
    "fs.count": 1,
    "fs.0.name": "vda1",
    "fs.0.mountpoint": "/",
    "fs.0.fstype": "ext4",
    "fs.0.total-bytes": 1447751680,
    "fs.0.used-bytes": 204148736,
    "fs.0.disk.count": 1,
    "fs.0.disk.0.alias": "vda",
    "if.count": 2,
    "if.0.name": "lo",
    "if.0.hwaddr": "00:00:00:00:00:00",
    "if.0.addr.count": 1,
    "if.0.addr.0.type": "ipv4",
    "if.0.addr.0.addr": "127.0.0.1",
    "if.0.addr.0.prefix": 8,
    "if.1.name": "enp0s2",
    "if.1.hwaddr": "52:54:00:6A:00:01",
    "if.1.addr.count": 2,
    "if.1.addr.0.type": "ipv4",
    "if.1.addr.0.addr": "10.77.0.5",
    "if.1.addr.0.prefix": 24,
    "if.1.addr.1.type": "ipv6",
    "if.1.addr.1.addr": "fe80::5054:ff:fe6a:1",
    "if.1.addr.1.prefix": 64,
}


def test_recorded_answer_maps_to_guest_facts() -> None:
    facts = facts_from_info(RECORDED, "agent:web")
    assert (facts.os_family, facts.os_name, facts.os_version) == ("linux", "debian", "12")
    assert facts.os_pretty == "Debian GNU/Linux 12 (bookworm)"
    assert facts.hostname == "vmw-ga-live"
    assert facts.kernel_release == "6.1.0-56-cloud-amd64"
    assert facts.logged_in == [
        {"name": "alice", "domain": None, "login_time": "2025-11-23T10:50:00+00:00"}
    ]
    assert facts.filesystems == ["ext4"]
    assert facts.mounts is not None and facts.mounts[0]["mountpoint"] == "/"
    assert facts.mounts[0]["disks"] == ["vda"]
    assert facts.network == [
        {
            "source": "agent",
            "name": "enp0s2",
            "mac": "52:54:00:6a:00:01",
            "method": "live",
            "addresses": ["10.77.0.5/24", "fe80::5054:ff:fe6a:1/64"],
            "gateway": None,
        }
    ]
    assert facts.timezone == {"name": "UTC", "offset": 0}
    assert facts.packages is None and facts.users is None  # the agent cannot tell these


def test_types_the_agent_did_not_answer_stay_unknown() -> None:
    facts = facts_from_info({"hostname": "h", "os.id": "mswindows"}, "agent:w")
    assert facts.os_family == "windows"
    assert facts.logged_in is None and facts.mounts is None and facts.network is None
    assert facts.kernel_release is None and facts.timezone is None


def test_channel_state_is_read_from_domain_xml() -> None:
    def devices(xml: str) -> etree._Element:
        return etree.fromstring(f"<devices>{xml}</devices>")

    chan = "<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'{}/></channel>"
    assert agent_channel(devices(chan.format(" state='connected'"))) == "connected"
    assert agent_channel(devices(chan.format(" state='disconnected'"))) == "disconnected"
    assert agent_channel(devices(chan.format(""))) == "unknown"
    spice = "<channel type='spicevmc'><target type='virtio' name='com.redhat.spice.0'/></channel>"
    assert agent_channel(devices(spice)) is None
    assert agent_channel(None) is None


def test_defined_agent_channel_without_state_is_unknown(corpus_dir: Path) -> None:
    vm = parse_domain(
        (corpus_dir / "q35-virt-manager-basic.xml").read_bytes(),
        host="h",
        uri="test:///h.xml",
        state=State.SHUTOFF,
        persistent=True,
    )
    assert vm.agent_channel == "unknown"  # a defined channel; libvirt adds state when live


def disk_facts() -> GuestFacts:
    return GuestFacts(
        image="/img/web.qcow2",
        os_family="linux",
        os_name="debian",
        os_version="11",
        hostname="vmw-ga-disk",
        kernels=["5.10.0-28-amd64"],
        packages=[Package("openssh-server", "1:9.2p1-2")],
        users=[User("root", 0, password="hash")],
        sshd={"permitrootlogin": "no"},
        filesystems=["ext4", "vfat"],
        errors=["services: unreadable"],
    )


def test_live_facts_win_and_disk_only_facts_stay() -> None:
    disk = disk_facts()
    before = disk.to_dict()
    live = facts_from_info(RECORDED, "agent:web")
    merged = merge_live(disk, live)
    assert merged.hostname == "vmw-ga-live" and merged.os_version == "12"
    assert merged.kernel_release == "6.1.0-56-cloud-amd64"
    assert merged.kernels == ["5.10.0-28-amd64"]  # installed kernels: only the disk knows
    assert merged.filesystems == ["ext4"]
    assert merged.packages == disk.packages and merged.users == disk.users
    assert merged.sshd == {"permitrootlogin": "no"}
    assert merged.image == "/img/web.qcow2"
    assert "hostname" in merged.sources["agent"] and "packages" in merged.sources["disk"]
    assert "hostname" not in merged.sources["disk"]
    assert merged.errors == ["services: unreadable"]
    assert disk.to_dict() == before  # the cached disk facts are not touched


def test_an_agent_that_did_not_answer_leaves_disk_facts_and_a_note() -> None:
    note = "guest agent: no answer within 2s; live facts not read"
    merged = merge_live(disk_facts(), GuestFacts(image="agent:web", errors=[note]))
    assert merged.hostname == "vmw-ga-disk" and merged.os_version == "11"
    assert merged.sources["agent"] == []
    assert merged.errors == ["services: unreadable", note]


def test_facts_stored_before_sources_existed_still_load() -> None:
    old = disk_facts().to_dict()
    for key in ("kernel_release", "logged_in", "mounts", "timezone", "sources"):
        del old[key]
    loaded = GuestFacts.from_dict(old)
    assert loaded.sources == {} and loaded.kernel_release is None
    assert loaded.packages == [Package("openssh-server", "1:9.2p1-2")]


def test_a_driver_without_the_agent_api_notes_it_and_makes_no_call(tmp_path: Path) -> None:
    """The test driver keeps no channel state: a running domain with an agent channel is
    noted as not asked (its driver has neither guestInfo nor a response timeout)."""
    fleet = tmp_path / "agents.xml"
    fleet.write_text(
        "<node><domain type='test'><name>vmw-ga-td</name><memory>65536</memory>"
        "<os><type>hvm</type></os><devices><channel type='unix'>"
        "<target type='virtio' name='org.qemu.guest_agent.0' state='connected'/>"
        "</channel></devices></domain>"
        "<domain type='test'><name>plain</name><memory>65536</memory>"
        "<os><type>hvm</type></os></domain></node>"
    )
    with LibvirtConnector(f"test://{fleet}") as conn:
        vms = {vm.name: vm for vm in conn.inventory().vms}
    assert vms["plain"].agent_channel is None and vms["plain"].agent is None
    agent = vms["vmw-ga-td"].agent
    assert agent is not None and agent.hostname is None
    assert agent.errors == ["guest agent: channel state unknown, not asked; live facts not read"]

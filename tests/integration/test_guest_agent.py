"""A real guest running qemu-ga under the real libvirtd: its live facts are merged over the
disk's by ``vmwarden scan``, and an agent that stops answering costs a note, not the sweep.

The guest (``scripts/build-agent-image.sh``) boots the host's kernel straight into an init
that sets the live hostname ``vmw-ga-live``, while its disk's /etc/hostname says
``vmw-ga-disk``: which one a scan reports shows which source won. One VM per module; the
last two tests freeze its agent, then kill it (order matters).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest

from tests.conftest import REPO
from tests.integration.conftest import IMAGES, URI, remove_domain, vmwarden

pytestmark = pytest.mark.libvirtd

NAME = "vmw-ga-guest"
MAC = "52:54:00:6a:00:01"
LIVE_IP = "10.77.0.5"
CACHE = Path("/var/cache/vmwarden-test")
POLICY = "version: 1\nrules: []\n"
FROZEN_FOR = 60  # seconds the agent stays frozen before it is killed (a scan takes ~10)


def usable_virt() -> str:
    """KVM only when the CPU exposes it: here /dev/kvm exists on a CPU without vmx/svm,
    and a KVM guest then never runs a single instruction of its kernel."""
    flags = Path("/proc/cpuinfo").read_text().split()
    has_hw = "vmx" in flags or "svm" in flags
    return "kvm" if has_hw and Path("/dev/kvm").exists() else "qemu"


def guest_xml(disk: Path, virt: str) -> str:
    return f"""<domain type='{virt}'><name>{NAME}</name><memory unit='MiB'>256</memory>
<vcpu>1</vcpu><os><type arch='x86_64' machine='pc'>hvm</type>
<kernel>{CACHE / "agent-vmlinuz"}</kernel><initrd>{CACHE / "agent-initrd.img"}</initrd>
<cmdline>root=/dev/vda1 ro console=ttyS0 init=/sbin/vmw-ga-init vmw_ip={LIVE_IP}/24</cmdline>
</os><devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
<source file='{disk}'/><target dev='vda' bus='virtio'/></disk>
<interface type='network'><mac address='{MAC}'/><source network='prod'/>
<model type='virtio'/><rom enabled='no'/></interface>
<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
</devices></domain>"""


def agent(command: str, args: dict[str, Any] | None = None, timeout: int = 2) -> Any:
    """One command through ``virsh qemu-agent-command``; None when the agent did not answer."""
    body = json.dumps({"execute": command, **({"arguments": args} if args else {})})
    proc = subprocess.run(
        ["virsh", "-c", URI, "qemu-agent-command", NAME, body, "--timeout", str(timeout)],
        capture_output=True,
        text=True,
        check=False,
    )
    return json.loads(proc.stdout)["return"] if proc.returncode == 0 else None


@pytest.fixture(scope="module")
def guest(system_conn: libvirt.virConnect, networks: dict[str, str]) -> Iterator[dict[str, Any]]:
    """The agent guest, booted once; destroyed and undefined with its disk at the end."""
    subprocess.run(["bash", str(REPO / "scripts" / "build-agent-image.sh")], check=True)
    workdir = IMAGES / f"vmw-ga-{uuid.uuid4().hex[:8]}"
    workdir.mkdir(parents=True)
    disk = workdir / "guest.qcow2"
    shutil.copyfile(CACHE / "agent-guest.qcow2", disk)  # a copy: the scan reads it whole
    remove_domain(system_conn, NAME)
    dom = system_conn.defineXML(guest_xml(disk, usable_virt()))
    try:
        started = time.monotonic()
        dom.create()
        deadline = started + 300  # TCG on a loaded machine; measured 16 s when idle
        while agent("guest-ping", timeout=1) is None:
            assert time.monotonic() < deadline, "the guest agent never answered"
            time.sleep(0.5)
        boot = time.monotonic() - started
        print(f"\nguest agent answered {boot:.1f} s after start")
        yield {"dom": dom, "workdir": workdir}
    finally:
        conn = libvirt.open(URI)  # not system_conn: it dies if libvirtd was restarted meanwhile
        try:
            remove_domain(conn, NAME)
        finally:
            conn.close()
        shutil.rmtree(workdir, ignore_errors=True)


def live_xml() -> str:
    """The running domain's XML through virsh: a fresh connection each time, so a libvirtd
    restarted by a neighbour's test does not fail this one."""
    for _ in range(10):  # libvirtd restarting (a neighbour's test) refuses for a moment
        proc = subprocess.run(
            ["virsh", "-c", URI, "dumpxml", NAME], capture_output=True, text=True, check=False
        )
        if proc.returncode == 0:
            return proc.stdout
        time.sleep(1)
    raise AssertionError(f"virsh dumpxml {NAME} kept failing: {proc.stderr.strip()}")


def scan_vm(tmp_path: Path) -> dict[str, Any]:
    """``vmwarden scan`` of the real host (JSON) and this module's VM in it."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    db = f"sqlite:///{tmp_path / 'scan.db'}"
    started = time.monotonic()
    out = vmwarden("scan", "-c", URI, "-p", str(policy), "--format", "json", "--db", db)
    print(f"scan took {time.monotonic() - started:.1f} s")
    (vm,) = [vm for vm in json.loads(out.stdout)["vms"] if vm["name"] == NAME]
    return vm


def test_the_agent_answers_with_the_live_hostname(guest: dict[str, Any]) -> None:
    assert agent("guest-ping") == {}
    assert agent("guest-get-host-name") == {"host-name": "vmw-ga-live"}
    assert "name='org.qemu.guest_agent.0' state='connected'" in live_xml()


def test_scan_lays_live_agent_facts_over_the_disk(guest: dict[str, Any], tmp_path: Path) -> None:
    vm = scan_vm(tmp_path)
    facts = vm["guest"]
    release = (CACHE / "agent-release").read_text().strip()  # the guest's kernel, not on its disk
    # Live wins: the disk says vmw-ga-disk, the running guest vmw-ga-live.
    assert facts["hostname"] == "vmw-ga-live"
    assert facts["kernel_release"] == release  # only the agent knows the running kernel
    assert facts["os_name"] == "debian" and facts["os_version"] == "12"
    assert facts["filesystems"] == ["ext4"]
    assert [m["mountpoint"] for m in facts["mounts"]] == ["/"]
    assert facts["logged_in"] == []  # read, and nobody is logged in
    assert facts["timezone"]["name"] == "UTC"
    assert [i["mac"] for i in facts["network"]] == [MAC]
    assert f"{LIVE_IP}/24" in facts["network"][0]["addresses"]
    (nic,) = vm["nics"]
    assert LIVE_IP in nic["addresses"]  # the guest's own view (no DHCP, no ARP entry)
    # Disk-only facts stay from the disk.
    names = {p["name"] for p in facts["packages"]}
    assert {"qemu-guest-agent", "iproute2"} <= names
    assert "root" in {u["name"] for u in facts["users"]}
    assert "hostname" in facts["sources"]["agent"]
    assert "packages" in facts["sources"]["disk"]
    assert "hostname" not in facts["sources"]["disk"]
    assert not [e for e in facts["errors"] if e.startswith("guest agent")]
    assert vm["agent"]["hostname"] == "vmw-ga-live"  # the agent's own answer, kept apart
    # The 2 s bound was the scan's alone: libvirtd's status of the domain says block again.
    status = Path(f"/run/libvirt/qemu/{NAME}.xml").read_text()
    assert "<agentTimeout>-2</agentTimeout>" in status


def test_a_frozen_agent_leaves_disk_facts_and_a_note(guest: dict[str, Any], tmp_path: Path) -> None:
    """qemu-ga is stopped (SIGSTOP from a child it spawned): the channel stays connected,
    nothing answers. The scan still completes, with the disk's facts and the reason.
    ``FROZEN_FOR`` seconds later the same child kills it (for the next test)."""
    script = f"sleep 1; kill -STOP $PPID; sleep {FROZEN_FOR}; kill -KILL $PPID"
    assert agent("guest-exec", {"path": "/bin/sh", "arg": ["-c", script]})
    deadline = time.monotonic() + 30
    while agent("guest-ping", timeout=1) is not None:
        assert time.monotonic() < deadline, "qemu-ga kept answering after SIGSTOP"
        time.sleep(0.5)
    assert "state='connected'" in live_xml()
    vm = scan_vm(tmp_path)
    facts = vm["guest"]
    assert facts["hostname"] == "vmw-ga-disk"  # the disk's /etc/hostname
    assert facts["kernel_release"] is None
    assert facts["sources"]["agent"] == []
    notes = [e for e in facts["errors"] if e.startswith("guest agent: ")]
    assert len(notes) == 1 and notes[0].endswith("live facts not read"), facts["errors"]
    assert {p["name"] for p in facts["packages"]} >= {"qemu-guest-agent"}


def test_a_dead_agent_is_not_asked_and_leaves_a_note(guest: dict[str, Any], tmp_path: Path) -> None:
    """qemu-ga killed: libvirt shows the channel disconnected, vmwarden does not call it."""
    deadline = time.monotonic() + FROZEN_FOR + 60
    while "state='disconnected'" not in live_xml():
        assert time.monotonic() < deadline, "the agent channel never showed disconnected"
        time.sleep(1)
    facts = scan_vm(tmp_path)["guest"]
    assert facts["hostname"] == "vmw-ga-disk"
    notes = [e for e in facts["errors"] if e.startswith("guest agent: ")]
    assert notes == [
        "guest agent: channel disconnected (qemu-ga is not running in the guest); "
        "live facts not read"
    ]

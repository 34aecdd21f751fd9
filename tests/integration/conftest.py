"""A real libvirtd + QEMU estate: networks, qcow2 images and small idle VMs.

VMs need no OS: a blank qcow2 disk, ``<bios rebootTimeout='-1'/>`` and ``<rom enabled='no'/>``
keep them idle. KVM is used when this libvirtd can use it, TCG (``type='qemu'``) otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest
from lxml import etree

from tests.conftest import REPO, qemu_img

URI = "qemu:///system"
IMAGES = Path("/var/lib/libvirt/images")  # qemu (libvirt-qemu) can traverse it; tmp_path it cannot
NETWORKS = {"prod": "vmw-t-prod", "pci": "vmw-t-pci", "quarantine": "vmw-t-quar"}
ISOLATED = {"network": "quarantine", "link": "down"}  # a quarantined NIC, as ``nics_of`` says


IMAGES_POOL = "vmw-t-images"


@pytest.fixture(scope="session")
def system_conn() -> Iterator[libvirt.virConnect]:
    """A separate connection of the test's own, to check what vmwarden did."""
    subprocess.run(["bash", str(REPO / "scripts" / "start-libvirtd.sh")], check=True)
    conn = libvirt.open(URI)
    images_pool(conn)
    yield conn
    conn.close()


def images_pool(conn: libvirt.virConnect) -> None:
    """IMAGES as a dir pool (idempotent, shared like the networks, never removed), as an
    administrator keeps images: backing files are followed only into pools, --images and
    approved templates' directories, never a disk's own directory (#10.3)."""
    try:
        pool = conn.storagePoolLookupByName(IMAGES_POOL)
    except libvirt.libvirtError:
        pool = conn.storagePoolDefineXML(
            f"<pool type='dir'><name>{IMAGES_POOL}</name>"
            f"<target><path>{IMAGES}</path></target></pool>"
        )
    if not pool.isActive():
        pool.create()


@pytest.fixture(scope="session")
def virt_type(system_conn: libvirt.virConnect) -> str:
    try:
        system_conn.getDomainCapabilities(None, "x86_64", None, "kvm")
    except libvirt.libvirtError:
        return "qemu"
    return "kvm" if os.access("/dev/kvm", os.R_OK | os.W_OK) else "qemu"


@pytest.fixture(scope="session")
def networks(system_conn: libvirt.virConnect) -> dict[str, str]:
    """Isolated bridges (no IP, no DHCP): nothing leaves this machine."""
    for name, bridge in NETWORKS.items():
        try:
            net = system_conn.networkLookupByName(name)
        except libvirt.libvirtError:
            net = system_conn.networkDefineXML(
                f"<network><name>{name}</name><bridge name='{bridge}'/></network>"
            )
        if not net.isActive():
            net.create()
    return dict(NETWORKS)


@pytest.fixture
def image_dir() -> Iterator[Path]:
    d = IMAGES / f"vmwarden-test-{uuid.uuid4().hex[:8]}"
    d.mkdir(parents=True)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def make_base(path: Path, size: str = "16M") -> Path:
    qemu_img("create", "-q", "-f", "qcow2", str(path), size)
    return path


def make_clone(base: Path, path: Path) -> Path:
    qemu_img("create", "-q", "-f", "qcow2", "-b", str(base), "-F", "qcow2", str(path))
    return path


def domain_xml(
    name: str, virt: str, disk: Path, nics: list[dict[str, str]], meta: dict[str, str]
) -> str:
    meta_xml = "".join(f"<vmwarden:{k}>{v}</vmwarden:{k}>" for k, v in meta.items())
    nic_xml = ""
    for nic in nics:
        link = f"<link state='{nic['link']}'/>" if "link" in nic else ""
        nic_xml += (
            f"<interface type='network'><mac address='{nic['mac']}'/>"
            f"<source network='{nic['network']}'/><model type='virtio'/>{link}"
            "<rom enabled='no'/></interface>"
        )
    return f"""<domain type='{virt}'><name>{name}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>
<metadata><vmwarden:vm xmlns:vmwarden="http://vmwarden.dev/xmlns/vm/1">{meta_xml}</vmwarden:vm></metadata>
<os><type arch='x86_64' machine='pc'>hvm</type><bios rebootTimeout='-1'/></os>
<devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
<source file='{disk}'/><target dev='vda' bus='virtio'/></disk>{nic_xml}</devices></domain>"""


def nics_of(dom: libvirt.virDomain, *, inactive: bool) -> dict[str, dict[str, str]]:
    """mac -> {network, link} as libvirt itself reports it."""
    flags = libvirt.VIR_DOMAIN_XML_INACTIVE if inactive else 0
    root = etree.fromstring(dom.XMLDesc(flags).encode())
    out = {}
    for iface in root.iterfind("devices/interface"):
        link = iface.find("link")
        out[iface.find("mac").get("address")] = {
            "network": iface.find("source").get("network"),
            "link": "up" if link is None else link.get("state"),
        }
    return out


def both(dom: libvirt.virDomain) -> tuple[dict, dict]:
    return nics_of(dom, inactive=False), nics_of(dom, inactive=True)


def remove_domain(conn: libvirt.virConnect, name: str) -> None:
    """Destroy and undefine the VM ``name`` if it exists (one of ours, by its prefix)."""
    try:
        dom = conn.lookupByName(name)
    except libvirt.libvirtError:
        return
    if dom.isActive():
        dom.destroy()
    dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)


class RealVMs:
    """Defines and starts VMs; destroys and undefines every one of them at teardown."""

    def __init__(self, conn: libvirt.virConnect, virt: str) -> None:
        self.conn, self.virt, self.names = conn, virt, []

    def define(
        self, name: str, disk: Path, nics: list[dict[str, str]], meta: dict[str, str]
    ) -> libvirt.virDomain:
        """Define the VM (replacing one of that name), not started."""
        remove_domain(self.conn, name)
        dom = self.conn.defineXML(domain_xml(name, self.virt, disk, nics, meta))
        self.names.append(name)
        return dom

    def start(
        self, name: str, disk: Path, nics: list[dict[str, str]], meta: dict[str, str]
    ) -> libvirt.virDomain:
        dom = self.define(name, disk, nics, meta)
        dom.create()
        return dom

    def cleanup(self) -> None:
        for name in self.names:
            remove_domain(self.conn, name)


@pytest.fixture
def real_vms(
    system_conn: libvirt.virConnect, virt_type: str, networks: dict[str, str]
) -> Iterator[RealVMs]:
    vms = RealVMs(system_conn, virt_type)
    yield vms
    vms.cleanup()


def vmwarden(
    *args: str, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a fresh process (as an operator would)."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "vmwarden.cli.main", *args],
        capture_output=True,
        text=True,
        check=False,
        env=full_env,
        timeout=300,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"vmwarden {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
    return proc

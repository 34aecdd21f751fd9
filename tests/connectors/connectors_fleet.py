"""A libvirt test-driver fleet: hundreds of domains in every state, networks and a pool.

The test driver reads a ``<node>`` file on every ``libvirt.open("test:///PATH")`` and keeps
changes in memory only, so each connection starts from the same fleet.
State and transience come from the driver's own XML namespace, which must be exactly
``http://libvirt.org/schemas/domain/test/1.0`` (other URIs are silently ignored):
``<test:runstate>`` holds a ``virDomainState`` number, ``<test:transient/>`` marks a
transient domain (never shut off).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

TEST_NS = "http://libvirt.org/schemas/domain/test/1.0"
VM_NS = "http://vmwarden.dev/xmlns/vm/1"

# How many domains of each kind the fleet holds (kind → runstate, transient).
KINDS: dict[str, tuple[int, bool]] = {
    "run": (1, False),
    "paused": (3, False),
    "off": (5, False),
    "trans": (1, True),
}
COUNTS = {"run": 120, "paused": 60, "off": 90, "trans": 30}


@dataclass(frozen=True)
class FleetVm:
    name: str
    uuid: str
    kind: str
    mac: str
    network: str
    vlan: int | None
    owner: str | None


def fleet_vms() -> list[FleetVm]:
    vms = []
    n = 0
    for kind, count in COUNTS.items():
        for i in range(count):
            n += 1
            vms.append(
                FleetVm(
                    name=f"{kind}-{i:03d}",
                    uuid=f"00000000-0000-4000-8000-{n:012d}",
                    kind=kind,
                    mac=f"52:54:00:00:{n >> 8:02x}:{n & 255:02x}",
                    network="pci" if n % 5 == 0 else "prod",
                    vlan=100 + n % 3 if n % 2 == 0 else None,
                    owner=f"user{n % 7}" if n % 3 == 0 else None,
                )
            )
    return vms


def domain_xml(vm: FleetVm) -> str:
    state, transient = KINDS[vm.kind]
    vlan = f"<vlan><tag id='{vm.vlan}'/></vlan>" if vm.vlan is not None else ""
    meta = ""
    if vm.owner:
        meta = (
            f"<metadata><vmwarden:vm xmlns:vmwarden='{VM_NS}'>"
            f"<vmwarden:owner>{vm.owner}</vmwarden:owner>"
            "<vmwarden:classification>internal</vmwarden:classification>"
            "<vmwarden:registered>yes</vmwarden:registered>"
            "<vmwarden:tag name='team'>blue</vmwarden:tag>"
            "</vmwarden:vm></metadata>"
        )
    return f"""
  <domain type='test' xmlns:test='{TEST_NS}'>
    <name>{vm.name}</name>
    <uuid>{vm.uuid}</uuid>
    {meta}
    <memory unit='MiB'>256</memory>
    <vcpu>2</vcpu>
    <os><type arch='x86_64'>hvm</type></os>
    <devices>
      <disk type='file' device='disk'>
        <driver name='qemu' type='qcow2'/>
        <source file='/pool/images/{vm.name}.qcow2'/>
        <target dev='vda' bus='virtio'/>
      </disk>
      <interface type='network'>
        <mac address='{vm.mac}'/>
        <source network='{vm.network}' portgroup='web'/>
        {vlan}
        <model type='virtio'/>
      </interface>
    </devices>
    {"<test:transient/>" if transient else ""}
    <test:runstate>{state}</test:runstate>
  </domain>"""


BARE_DOMAIN = f"""
  <domain type='test' xmlns:test='{TEST_NS}'>
    <name>bare</name>
    <uuid>00000000-0000-4000-8000-ffffffffffff</uuid>
    <memory>65536</memory>
    <os><type>hvm</type></os>
    <test:runstate>5</test:runstate>
  </domain>"""

HOST_OBJECTS = """
  <network>
    <name>prod</name><bridge name='virbr1'/><forward mode='nat'/>
    <ip address='192.168.10.1' netmask='255.255.255.0'>
      <dhcp><range start='192.168.10.2' end='192.168.10.254'/></dhcp>
    </ip>
  </network>
  <network>
    <name>pci</name><bridge name='virbr2'/><forward mode='route'/>
    <ip address='192.168.20.1' netmask='255.255.255.0'>
      <dhcp><range start='192.168.20.2' end='192.168.20.254'/></dhcp>
    </ip>
  </network>
  <network><name>quarantine</name><bridge name='virbr9'/></network>
  <pool type='dir'>
    <name>images</name>
    <target><path>/pool/images</path></target>
    <volume type='file'>
      <name>debian12-base.qcow2</name>
      <capacity unit='GiB'>10</capacity><allocation unit='MiB'>700</allocation>
      <target><path>/pool/images/debian12-base.qcow2</path><format type='qcow2'/></target>
    </volume>
    <volume type='file'>
      <name>run-000.qcow2</name>
      <capacity unit='GiB'>10</capacity><allocation unit='MiB'>20</allocation>
      <target><path>/pool/images/run-000.qcow2</path><format type='qcow2'/></target>
      <backingStore>
        <path>/pool/images/debian12-base.qcow2</path><format type='qcow2'/>
      </backingStore>
    </volume>
    <volume type='file'>
      <name>orphan.raw</name>
      <capacity>1048576</capacity>
      <target><format type='raw'/></target>
    </volume>
  </pool>
"""


def write_fleet(path: Path, vms: list[FleetVm], *, bare: bool = True) -> Path:
    body = "".join(domain_xml(vm) for vm in vms)
    path.write_text(f"<node>{body}{BARE_DOMAIN if bare else ''}{HOST_OBJECTS}</node>\n")
    return path

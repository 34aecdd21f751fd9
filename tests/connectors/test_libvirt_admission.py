"""Admission is an optional connector capability: libvirt's hook request (domain XML) is
read in ``connectors/libvirt/admission.py``; a platform without one is a clear error."""

from __future__ import annotations

import subprocess
import sys

import pytest

from vmwarden.connectors.capabilities import admission_parser
from vmwarden.errors import ConnectorError, VmwardenError
from vmwarden.model import State

DOMAIN = """<domain type='kvm'><name>vmw-n-adm</name>
<uuid>6f1c1a52-0c43-4b8e-9d57-6d2b7a1e0a01</uuid>
<devices><interface type='network'><mac address='52:54:00:aa:bb:01'/>
<source network='prod'/></interface></devices></domain>"""


def test_libvirt_hook_request_is_read_into_the_vm_about_to_start() -> None:
    vm = admission_parser("qemu:///system")(DOMAIN, host="hv9", uri="qemu:///system")
    assert (vm.id, vm.name, vm.host, vm.state) == (
        "6f1c1a52-0c43-4b8e-9d57-6d2b7a1e0a01",
        "vmw-n-adm",
        "hv9",
        State.SHUTOFF,
    )
    assert [n.mac for n in vm.nics] == ["52:54:00:aa:bb:01"]


def test_unreadable_request_is_a_vmwarden_error_not_a_traceback() -> None:
    with pytest.raises(VmwardenError):
        admission_parser("qemu:///system")("<domain", host="hv9", uri="qemu:///system")


def test_a_platform_without_admission_is_a_clear_error() -> None:
    with pytest.raises(ConnectorError, match="no start-time admission hook"):
        admission_parser("nope://host")


def test_the_admission_capability_loads_no_platform_sdk() -> None:
    """libvirtd holds the domain's lock while its hook waits: the parser must not load
    libvirt-python (nor could it call back into libvirtd)."""
    code = (
        "import sys\n"
        "from vmwarden.connectors.capabilities import admission_parser\n"
        "admission_parser('qemu:///system')\n"
        "print(sorted(m for m in sys.modules if m == 'libvirt' or m.startswith('libvirt.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

"""#10.2: another host's disk is never read from this machine's file of the same path, and
two URIs reaching one daemon count its VMs once.

Host B is a real second libvirtd (its own host UUID, hostname and state; see
tests/hypervisors.py), reached the way an SSH tunnel is: ``qemu+tcp://localhost:PORT``. Its
rogue VM's disk path names, on this machine, a clean approved image: a sweep that read it
here would clear the rogue.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hypervisors import SecondHost, Tunnel, second_host, tunnel
from tests.inspect.conftest import build_tree_image, write_guest_tree
from vmwarden.engine.inspection import InspectionOptions
from vmwarden.engine.scan import Sweep, SweepOptions
from vmwarden.inspect.digest import digest_file
from vmwarden.policy import Policy, parse_policy
from vmwarden.store import Store

ROGUE = str(uuid.uuid5(uuid.NAMESPACE_URL, "vmw-g-rogue"))
NO_INSPECT = SweepOptions(inspect=InspectionOptions(enabled=False))


def domain(name: str, vm_id: str, disk: Path) -> str:
    return f"""<domain type='qemu'><name>{name}</name><uuid>{vm_id}</uuid>
<memory unit='MiB'>64</memory><os><type arch='x86_64'>hvm</type></os>
<devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
<source file='{disk}'/><target dev='vda' bus='virtio'/></disk></devices></domain>"""


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean, approvable guest image on *this* machine (no telnetd)."""
    root = tmp_path_factory.mktemp("clean")
    tree = root / "tree"
    write_guest_tree(tree)
    return build_tree_image(root, tree, "golden.qcow2")


@pytest.fixture(scope="module")
def host_b(tmp_path_factory: pytest.TempPathFactory, clean: Path) -> Iterator[SecondHost]:
    for host in second_host(tmp_path_factory, "vmw-g-hostb"):
        # On host B the path names B's own file: a rogue image nobody here has seen.
        host.define(domain("vmw-g-rogue", ROGUE, clean))
        yield host


@pytest.fixture
def tunnel_to_b(host_b: SecondHost) -> Iterator[Tunnel]:
    yield from tunnel(host_b.socket_path)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(f"sqlite:///{tmp_path / 'w.db'}") as opened_store:
        yield opened_store


@pytest.fixture(scope="module")
def policy(clean: Path) -> Policy:
    """The clean image is approved here (hashed now, before any test records what it opens)."""
    return parse_policy(
        f"""version: 1
templates: [{{name: golden, digest: "{digest_file(clean)}"}}]
rules:
  - {{name: unapproved, resource: vm, severity: high, filters: [not-approved-template]}}
  - name: forbidden-software
    resource: vm
    severity: high
    filters: [{{type: package, installed: [telnetd]}}]
""",
        source="policy.yaml",
    )


def test_remote_disk_is_not_hashed_from_the_local_file_of_that_path(
    tunnel_to_b, clean, policy, store, opened
):
    result = Sweep(store, policy, actor="t", options=NO_INSPECT).run([tunnel_to_b.uri])
    (vm,) = result.vms
    assert vm.name == "vmw-g-rogue" and vm.host == "vmw-g-hostb"
    assert str(clean) not in opened  # the local file of that name was never opened
    assert vm.disks[0].root.digest is None
    # #12.3: read through B's connection, where that path is no volume of B's pools
    assert any("disk outside any storage pool on vmw-g-hostb" in w for w in result.warnings)
    by_rule = {f.rule: f for f in result.findings}
    # unknown lineage never clears: the rogue is flagged, with why it is unknown
    assert "not readable from here" in by_rule["unapproved"].evidence["unknown"]


def test_remote_vm_is_not_cleared_by_inspecting_a_local_image(tunnel_to_b, policy, store):
    options = SweepOptions(inspect=InspectionOptions(enabled=True, timeout=120))
    result = Sweep(store, policy, actor="t", options=options).run([tunnel_to_b.uri])
    (vm,) = result.vms
    assert vm.guest is None  # not inspected: its disk is on host B
    assert "forbidden-software" in {f.rule for f in result.findings}
    # #12.3: B's disk is read only through B's pools, and this path is in none of them
    (unread,) = [f for f in result.findings if f.rule == "uninspectable"]
    assert "disk outside any storage pool on vmw-g-hostb" in unread.evidence["reason"]


def test_uris_reaching_one_daemon_count_its_vms_once(host_b, tunnel_to_b, policy, store):
    uris = [host_b.tcp_uri, tunnel_to_b.uri, host_b.unix_uri]
    result = Sweep(store, policy, actor="t", options=NO_INSPECT).run(uris)
    assert [vm.id for vm in result.vms] == [ROGUE]
    assert [vm.uri for vm in result.vms] == [host_b.tcp_uri]  # the first URI given keeps it
    twins = [w for w in result.warnings if "reaches the same hypervisor" in w]
    assert len(twins) == 2
    assert tunnel_to_b.uri in twins[0] and host_b.tcp_uri in twins[0]
    assert len([f for f in result.findings if f.rule == "unapproved"]) == 1

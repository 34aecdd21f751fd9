"""#12.3/#12.6: a remote host's disks are read through its libvirt connection, agentlessly.

Host B is a real second libvirtd in its own namespaces (tests/hypervisors.py) with a dir pool
of its own (``/var/lib/libvirt/images`` *on B*: B's state directory here). B's VM is a linked
clone of an approved template, both volumes of that pool. On *this* machine, the very same
path holds another image (another hostname, no packages): a sweep that read it would clear the
VM (no chrony). The same estate, local (test driver, same bytes), gets the same findings.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import libvirt
import pytest

from tests.hypervisors import SecondHost, second_host
from tests.inspect.conftest import build_tree_image, write_guest_tree
from vmwarden.engine.inspection import InspectionOptions
from vmwarden.engine.remote_disks import cache_path
from vmwarden.engine.scan import Sweep, SweepOptions
from vmwarden.inspect.digest import digest_file
from vmwarden.policy import Policy, parse_policy
from vmwarden.store import Store
from vmwarden.store.facts import FactsCache

POOL_DIR = "/var/lib/libvirt/images"  # on B; here it is B's state dir lib/images
CLONE = f"{POOL_DIR}/vmw-j-clone.qcow2"
BROKEN = f"{POOL_DIR}/vmw-j-broken.qcow2"
REMOTE_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "vmw-j-remote"))
TWIN_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "vmw-j-twin"))
BROKEN_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "vmw-j-broken"))
OPTIONS = InspectionOptions(enabled=True, timeout=120)


def domain(name: str, vm_id: str, disk: str) -> str:
    return f"""<domain type='qemu'><name>{name}</name><uuid>{vm_id}</uuid>
<memory unit='MiB'>64</memory><os><type arch='x86_64'>hvm</type></os>
<devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
<source file='{disk}'/><target dev='vda' bus='virtio'/></disk></devices></domain>"""


@dataclass
class Estate:
    base: Path  # the approved template (local copy; B has the same bytes)
    twin_dir: Path  # the local twin's template + clone
    host: SecondHost
    impostor: Path  # this machine's file at B's clone path


def _tree(root: Path, hostname: str, *, telnetd: bool) -> Path:
    tree = root / f"tree-{hostname}"
    write_guest_tree(tree)
    (tree / "etc/hostname").write_text(hostname + "\n")
    if not telnetd:
        (tree / "var/lib/dpkg/status").write_text("")
    return tree


@pytest.fixture(scope="module")
def estate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Estate]:
    work = tmp_path_factory.mktemp("j-estate")
    twin_dir = work / "twin"
    twin_dir.mkdir()
    base = build_tree_image(twin_dir, _tree(work, "vmw-j-remote-guest", telnetd=True), "base.qcow2")
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2",
         str(twin_dir / "clone.qcow2")],
        check=True,
    )  # fmt: skip
    impostor_src = build_tree_image(work, _tree(work, "impostor", telnetd=False), "other.qcow2")
    impostor = Path(CLONE)
    assert not impostor.exists(), f"{impostor} is not ours"
    impostor.parent.mkdir(parents=True, exist_ok=True)
    for host in second_host(tmp_path_factory, "vmw-j-hostb"):
        images = host.state / "lib" / "images"
        images.mkdir(parents=True, exist_ok=True)
        shutil.copy(base, images / "vmw-j-base.qcow2")
        subprocess.run(
            ["qemu-img", "create", "-q", "-f", "qcow2", "-b", "vmw-j-base.qcow2", "-F", "qcow2",
             str(images / "vmw-j-clone.qcow2")],
            check=True,
        )  # fmt: skip
        # a hostile/broken volume: a qcow2 cut short (its tables point past the end)
        with open(base, "rb") as src, open(images / "vmw-j-broken.qcow2", "wb") as dst:
            dst.write(src.read(256 * 1024))
        conn = libvirt.open(host.tcp_uri)
        try:
            pool = conn.storagePoolDefineXML(
                f"<pool type='dir'><name>vmw-j-images</name><target><path>{POOL_DIR}</path>"
                "</target></pool>"
            )
            pool.create(0)
        finally:
            conn.close()
        host.define(domain("vmw-j-remote", REMOTE_ID, CLONE))
        host.define(domain("vmw-j-broken", BROKEN_ID, BROKEN))
        shutil.copy(impostor_src, impostor)
        try:
            yield Estate(base, twin_dir, host, impostor)
        finally:
            impostor.unlink(missing_ok=True)


@pytest.fixture
def local_uri(estate: Estate, tmp_path: Path) -> str:
    """The same estate on this machine: a test-driver host whose VM uses the twin clone."""
    xml = tmp_path / "local.xml"
    vm = domain("vmw-j-twin", TWIN_ID, str(estate.twin_dir / "clone.qcow2"))
    xml.write_text(f"<node>{vm}</node>")
    return f"test://{xml}"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(f"sqlite:///{tmp_path / 'w.db'}") as opened_store:
        yield opened_store


@pytest.fixture(scope="module")
def policy(estate: Estate) -> Policy:
    return parse_policy(
        f"""version: 1
templates: [{{name: golden, digest: "{digest_file(estate.base)}"}}]
rules:
  - {{name: unapproved, resource: vm, severity: high, filters: [not-approved-template]}}
  - name: forbidden-software
    resource: vm
    severity: high
    filters: [{{type: package, installed: [chrony]}}]
""",
        source="policy.yaml",
    )


def _sweep(store: Store, policy: Policy, uris: list[str], twin_dir: Path):
    options = SweepOptions(inspect=OPTIONS, images_dirs=[twin_dir])
    return Sweep(store, policy, actor="t", options=options).run(uris)


def _judged(findings, vm_id: str) -> list[tuple[str, str, object]]:
    """What was found about one VM, without where it lives (host, path)."""
    out = []
    for f in findings:
        if f.id == vm_id:
            evidence = {k: v for k, v in f.evidence.items() if k not in ("image", "path")}
            out.append((f.rule, str(f.severity), evidence))
    return sorted(out, key=repr)


def test_remote_disk_is_read_through_its_connection(estate, local_uri, policy, store, opened):
    result = _sweep(store, policy, [local_uri, estate.host.tcp_uri], estate.twin_dir)
    vms = {vm.name: vm for vm in result.vms}
    remote, twin = vms["vmw-j-remote"], vms["vmw-j-twin"]
    assert remote.host == "vmw-j-hostb"
    # facts only B's image has; the file at that path here says "impostor", no packages
    assert remote.guest is not None and remote.guest.hostname == "vmw-j-remote-guest"
    assert "chrony" in {p.name for p in remote.guest.packages}
    assert str(estate.impostor) not in opened  # never opened here
    # the chain was read from B's headers, backing followed into B's pool, root hashed there
    chain = remote.disks[0].chain
    assert [layer.path for layer in chain] == [CLONE, f"{POOL_DIR}/vmw-j-base.qcow2"]
    assert chain[-1].digest == digest_file(estate.base)
    assert all(layer.host == "vmw-j-hostb" and layer.error is None for layer in chain)
    # the same estate scanned locally gets the same findings
    assert _judged(result.findings, REMOTE_ID) == _judged(result.findings, TWIN_ID)
    assert [r for r, _, _ in _judged(result.findings, REMOTE_ID)] == ["forbidden-software"]
    assert twin.guest is not None and twin.guest.hostname == remote.guest.hostname
    # cached per (host, path, size, mtime): the next sweep does not download the root again
    assert any(
        store.cached_digest(cache_path("vmw-j-hostb", f"{POOL_DIR}/vmw-j-base.qcow2"), st)
        for st in [_remote_stat(estate)]
    )


def _remote_stat(estate: Estate):
    from vmwarden.connectors.libvirt.volumes import RemoteVolumes
    from vmwarden.engine.remote_disks import cache_stat

    conn = libvirt.open(estate.host.tcp_uri)
    try:
        return cache_stat(RemoteVolumes(conn, "vmw-j-hostb").open(f"{POOL_DIR}/vmw-j-base.qcow2"))
    finally:
        conn.close()


def test_broken_remote_volume_is_uninspectable_not_a_crash(estate, policy, store):
    result = _sweep(store, policy, [estate.host.tcp_uri], estate.twin_dir)
    unread = [f for f in result.findings if f.rule == "uninspectable"]
    assert [f.id for f in unread] == [BROKEN_ID]
    assert unread[0].evidence["reason"]
    vms = {vm.name: vm for vm in result.vms}
    assert vms["vmw-j-broken"].guest is None
    assert vms["vmw-j-remote"].guest is not None  # the other disk of that host still read


def test_event_path_takes_the_remote_digest_from_the_cache_only(estate, policy, store):
    """watch's judge and event recorder read a remote chain but never download a root: the
    digest is pending until a sweep has hashed it, then comes from the store's cache."""
    from vmwarden.connectors.libvirt.connection import LibvirtConnector
    from vmwarden.engine.lineage import Lineage

    def event_root() -> Any:
        with LibvirtConnector(estate.host.tcp_uri) as connector:
            inv = connector.inventory()
        lineage = Lineage.for_store(store, remote=True, remote_hashing=False)
        try:
            lineage.enrich(inv)
        finally:
            lineage.close()
        (vm,) = [vm for vm in inv.vms if vm.id == REMOTE_ID]
        return vm.disks[0].root

    before = event_root()
    assert before.digest is None and "digest pending" in (before.error or "")
    _sweep(store, policy, [estate.host.tcp_uri], estate.twin_dir)
    after = event_root()
    assert after.error is None and after.digest == digest_file(estate.base)


def test_an_unchanged_remote_disk_is_not_read_again(estate, policy, store):
    """Facts are reused while every layer's (host, path, size, mtime) is unchanged, under a
    key no local file has; a changed layer is read again."""
    first = _sweep(store, policy, [estate.host.tcp_uri], estate.twin_dir)
    again = _sweep(store, policy, [estate.host.tcp_uri], estate.twin_dir)

    def facts(result):
        (vm,) = [vm for vm in result.vms if vm.id == REMOTE_ID]
        assert vm.guest is not None and vm.guest.hostname == "vmw-j-remote-guest"
        return vm.guest

    assert facts(again).inspected_at == facts(first).inspected_at  # from the cache
    assert facts(again).image == f"vmw-j-hostb:{CLONE}"
    assert str(estate.impostor) not in FactsCache(store).stored_many([str(estate.impostor)])
    clone = estate.host.state / "lib" / "images" / "vmw-j-clone.qcow2"
    os.utime(clone, (clone.stat().st_atime, clone.stat().st_mtime + 60))
    changed = _sweep(store, policy, [estate.host.tcp_uri], estate.twin_dir)
    assert facts(changed).inspected_at != facts(first).inspected_at


def test_remote_hosts_are_read_at_once_not_one_after_the_other(estate, store):
    """Each remote host's chains and digests are read on a thread of its own: a host whose
    reads wait (here: until the other host's have started) does not hold the other up."""
    import threading

    from vmwarden.connectors.libvirt.connection import LibvirtConnector
    from vmwarden.engine.lineage import Lineage

    inventories = []
    for uri in (estate.host.tcp_uri, estate.host.unix_uri):  # two connections, two "hosts"
        with LibvirtConnector(uri) as connector:
            inventories.append(connector.inventory())
    both_reading = threading.Barrier(2, timeout=30)
    first: set[int] = set()

    def lookup(path: str, st: os.stat_result) -> str | None:
        if threading.get_ident() not in first:
            first.add(threading.get_ident())
            both_reading.wait()  # sequential reads would never get here twice
        return store.cached_digest(path, st)

    lineage = Lineage.for_store(store, remote=True)
    assert lineage.remote is not None
    lineage.remote.lookup = lookup
    ticks: list[int] = []
    try:
        lineage.enrich_all(inventories, ticks.append)
    finally:
        lineage.close()
    assert ticks == [1, 2]
    for inv in inventories:
        (vm,) = [vm for vm in inv.vms if vm.id == REMOTE_ID]
        assert vm.disks[0].root.digest == digest_file(estate.base)

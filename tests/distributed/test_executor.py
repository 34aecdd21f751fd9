"""A sweep with a Dask cluster: the disks read by their hosts' workers give the same
findings and guest facts as a single-process sweep; a worker killed mid-sweep loses nothing."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from tests.distributed.conftest import HOSTS, Cluster, Estate
from vmwarden.distributed.executor import DaskDisks
from vmwarden.distributed.security import TlsFiles, cluster_security
from vmwarden.engine.content_lineage import FINGERPRINT_KEY
from vmwarden.engine.result import ScanResult
from vmwarden.engine.scan import Sweep, SweepOptions
from vmwarden.inspect.digest import digest_file
from vmwarden.policy import parse_policy
from vmwarden.store import Store


def _sweep(estate: Estate, db: Path, executor: DaskDisks | None = None) -> ScanResult:
    options = SweepOptions() if executor is None else SweepOptions(executor=executor)
    with Store.open(f"sqlite:///{db}") as store:
        # a signed template: full clones are recognised by content (read where the disk is)
        fingerprint = {FINGERPRINT_KEY: estate.signature}
        store.approve_template("golden-signed", digest_file(estate.golden), None, fingerprint, "t")
        return Sweep(store, parse_policy(estate.policy), actor="t", options=options).run(
            estate.uris
        )


def _executor(cluster: Cluster) -> DaskDisks:
    files = TlsFiles(cluster.certs.ca, cluster.certs.cert, cluster.certs.key)
    return DaskDisks(cluster.address, cluster_security(cluster.address, files, insecure=False))


def _found(result: ScanResult) -> set[tuple[str, str, str]]:
    return {(f.rule, f.resource, f.name) for f in result.findings}


def _facts(result: ScanResult) -> dict[str, tuple[object, ...]]:
    out = {}
    for vm in result.vms:
        g = vm.guest
        assert g is not None, f"{vm.name} was not inspected"
        out[vm.name] = (g.os_name, g.os_version, g.package_versions().get("openssl"))
    return out


@pytest.fixture(scope="module")
def local(estate: Estate, tmp_path_factory: pytest.TempPathFactory) -> ScanResult:
    return _sweep(estate, tmp_path_factory.mktemp("vmw-d-local") / "db.sqlite")


def test_a_distributed_sweep_finds_what_a_single_process_sweep_finds(
    estate: Estate, cluster: Cluster, local: ScanResult, tmp_path: Path
) -> None:
    executor = _executor(cluster)
    try:
        spread = _sweep(estate, tmp_path / "db.sqlite", executor)
    finally:
        executor.close()
    assert spread.disk_reads == dict.fromkeys(HOSTS, "worker")
    assert local.disk_reads == dict.fromkeys(HOSTS, "local")
    assert _found(spread) == _found(local)
    rules = {rule for rule, _, _ in _found(spread)}
    assert rules == {"unapproved", "shared-host-key", "stale-openssl", "stale-forgotten"}
    assert ("stale-forgotten", "image", "forgotten-c.qcow2") in _found(spread)  # a pool volume
    for result in (spread, local):  # read, not just flagged for want of facts
        (orphan,) = [i for i in result.images if i.path.endswith("forgotten-c.qcow2")]
        assert orphan.kind == "orphaned"
        assert orphan.guest is not None and orphan.guest.os_name == "debian"
    unapproved = {name for rule, _, name in _found(spread) if rule == "unapproved"}
    assert unapproved == {"vmw-d-db-a", "vmw-d-db-b", "vmw-d-db-c"}  # rogue-c: a full clone
    assert not [f for f in spread.findings if f.rule == "uninspectable"]
    assert _facts(spread) == _facts(local)
    digests = {vm.name: [(d.chain[-1].digest, len(d.chain)) for d in vm.disks] for vm in spread.vms}
    assert digests == {
        vm.name: [(d.chain[-1].digest, len(d.chain)) for d in vm.disks] for vm in local.vms
    }
    assert spread.to_dict()["disk_reads"] == spread.disk_reads


def test_a_worker_reads_nothing_outside_its_storage_dirs(estate: Estate, cluster: Cluster) -> None:
    """Host-a's worker asked for host-b's disk: refused by the worker itself (and the file is
    not even visible in its mount namespace)."""
    from vmwarden.distributed.placement import host_resource
    from vmwarden.distributed.reader import DiskRequest, read_disk

    other = str(estate.disks["web-b1"])
    with cluster.client() as client:
        request = DiskRequest("host-a", other, "qcow2", frozenset(), (), b"k" * 32)
        result = client.submit(
            read_disk, request, resources={host_resource("host-a"): 1}, pure=False
        ).result(timeout=60)
        visible = client.submit(
            Path.exists, Path(other), resources={host_resource("host-a"): 1}, pure=False
        ).result(timeout=60)
    assert result.facts is None
    assert "not under its storage directories" in (result.chain[0].error or "")
    assert visible is False  # the mount namespace: host-b's directory is not there


def _sweep_killing(estate: Estate, cluster: Cluster, db: Path, host: str) -> tuple[ScanResult, int]:
    """A distributed sweep during which the first worker of ``host`` seen reading a disk is
    SIGKILLed; the result and the killed worker's pid (its name ends ``-PID-N``)."""
    executor = _executor(cluster)
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["result"] = _sweep(estate, db, executor)
        except BaseException as exc:  # re-raised below, in the test's thread
            box["error"] = exc

    sweep = threading.Thread(target=run)
    killed = 0
    try:
        with cluster.client() as watcher:
            sweep.start()
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and sweep.is_alive() and not killed:
                for address, keys in watcher.processing().items():
                    who = watcher.scheduler_info(n_workers=-1)["workers"].get(address, {})
                    if keys and f"vmwarden-host:{host}" in (who.get("resources") or {}):
                        killed = int(str(who["name"]).split("-")[-2])
                        os.kill(killed, signal.SIGKILL)
                        break
                time.sleep(0.05)
        sweep.join(timeout=300)
    finally:
        executor.close()
    assert killed, f"no worker of {host} was seen reading a disk"
    assert "error" not in box, box.get("error")
    result = box["result"]
    assert isinstance(result, ScanResult)
    return result, killed


def test_a_worker_killed_mid_sweep_has_its_disks_read_by_another_of_its_host(
    estate: Estate, cluster: Cluster, local: ScanResult, tmp_path: Path
) -> None:
    """host-b has two workers; the one reading is SIGKILLed: Dask reruns its tasks on the
    other, and host-b is still read by a worker."""
    from vmwarden.distributed.placement import hosts_up

    spare = cluster.start_worker("host-b", spare=True)
    with cluster.client() as client:
        deadline = time.monotonic() + 90
        while len(hosts_up(client.scheduler_info(n_workers=-1)).get("host-b", [])) < 2:
            assert time.monotonic() < deadline, "the spare worker of host-b did not join"
            time.sleep(0.3)
    result, killed = _sweep_killing(estate, cluster, tmp_path / "db.sqlite", "host-b")
    assert result.disk_reads == dict.fromkeys(HOSTS, "worker")
    assert not any("lost mid-sweep" in w for w in result.warnings)
    assert _found(result) == _found(local)
    assert _facts(result) == _facts(local)
    if killed == cluster.workers["host-b"].pid:  # the survivor is host-b's worker from now on
        cluster.spares.remove(spare)
        cluster.spares.append(cluster.workers["host-b"])
        cluster.workers["host-b"] = spare


def test_a_worker_killed_mid_sweep_loses_nothing(
    estate: Estate, cluster: Cluster, local: ScanResult, tmp_path: Path
) -> None:
    """host-b's only worker is SIGKILLed while it reads a disk: host-b's disks are read by
    the sweep instead (said in disk_reads and a warning), and the findings are complete."""
    executor = _executor(cluster)
    victim = cluster.workers["host-b"]
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["result"] = _sweep(estate, tmp_path / "db.sqlite", executor)
        except BaseException as exc:  # re-raised below, in the test's thread
            box["error"] = exc

    sweep = threading.Thread(target=run)
    try:
        with cluster.client() as watcher:
            sweep.start()
            deadline = time.monotonic() + 120
            killed = False
            while time.monotonic() < deadline and sweep.is_alive() and not killed:
                busy = watcher.processing()
                for address, keys in busy.items():
                    who = watcher.scheduler_info(n_workers=-1)["workers"].get(address, {})
                    if keys and "vmwarden-host:host-b" in (who.get("resources") or {}):
                        victim.send_signal(signal.SIGKILL)
                        killed = True
                time.sleep(0.05)
        sweep.join(timeout=300)
    finally:
        executor.close()
        cluster.start_worker("host-b")  # the cluster is the session's: whole again
        cluster.wait_for(set(HOSTS))
    assert killed, "host-b's worker was never seen reading a disk"
    assert "error" not in box, box.get("error")
    result = box["result"]
    assert isinstance(result, ScanResult)
    assert result.disk_reads == {"host-a": "worker", "host-b": "local", "host-c": "worker"}
    assert any("host-b: its worker was lost mid-sweep" in w for w in result.warnings)
    assert _found(result) == _found(local)
    assert _facts(result) == _facts(local)

"""The streaming sweep with its hosts read and judged on Dask workers (``host_tasks``) gives
what the in-process streaming sweep gives: the same stored VMs (disk digests read by each
host's own worker, in its own mount namespace) and the same open findings, evidence
included; and without a worker the master sweeps every host itself, and says so."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.distributed.conftest import HOSTS, Cluster, Estate, start_scheduler
from tests.distributed.test_executor import _executor
from vmwarden.distributed.executor import DaskDisks
from vmwarden.distributed.host_tasks import DaskHosts
from vmwarden.engine.inspection import InspectionOptions
from vmwarden.engine.scan import Sweep, SweepOptions
from vmwarden.engine.stream import StreamingSweep
from vmwarden.policy import parse_policy
from vmwarden.store import Store

#: the estate's policy plus an estate-wide rule (pass 2 runs) and one on images
EXTRA = """\
  - {name: dupmac, resource: vm, severity: medium, filters: [duplicate-mac]}
  - {name: orphans, resource: image, severity: low, filters: [orphaned]}
"""


def _sweep(estate: Estate, db: Path, hosts: Any = None) -> tuple[Any, dict[str, Any]]:
    """A streaming sweep of the estate into a fresh store: the result and what it stored."""
    with Store.open(f"sqlite:///{db}") as store:
        policy = parse_policy(estate.policy + EXTRA)
        executor = hosts(store) if hosts is not None else None
        result = StreamingSweep(store, policy, hosts=executor).run(estate.uris)
        stored = {
            "findings": sorted(
                (f["rule"], f["resource"], f["id"], f["host"], repr(sorted(f["evidence"].items())))
                for f in store.findings("open")
            ),
            "roots": sorted(
                (r["host"], r["name"], d["chain"][-1].get("digest"), d["chain"][-1].get("error"))
                for host in HOSTS
                for r in store.host_records(host)
                for d in r["disks"]
            ),
        }
    return result, stored


def _spread(disks: DaskDisks) -> tuple[list[DaskHosts], Callable[[Store], DaskHosts]]:
    """The sweep's host runner on ``disks``' cluster, and the list that keeps it for the
    test's look at where each host went."""
    spread: list[DaskHosts] = []

    def on_workers(store: Store) -> DaskHosts:
        spread.append(DaskHosts(disks, store))
        return spread[0]

    return spread, on_workers


def test_hosts_swept_on_their_workers_give_the_in_process_findings(
    estate: Estate, cluster: Cluster, tmp_path: Path
) -> None:
    local, here = _sweep(estate, tmp_path / "local.sqlite")
    disks = _executor(cluster)
    spread, on_workers = _spread(disks)
    try:
        result, there = _sweep(estate, tmp_path / "spread.sqlite", on_workers)
        workers = disks.workers()
    finally:
        disks.close()
    (dask,) = spread
    assert dask.warnings == []  # nothing fell back to the master
    # each host swept once, by its own worker (test:// URIs name no host: a host that landed
    # on another host's worker was passed on to its own)
    assert sorted(dask.by_worker.values()) == [1, 1, 1]
    assert set(dask.by_worker) == {a for host in HOSTS for a in workers[host]}
    assert (result.hosts, result.vms) == (local.hosts, local.vms) == (3, 8)
    assert (result.counts()["on_workers"], local.counts()["on_workers"]) == (3, 0)
    assert there == here
    digests = [digest for _h, _n, digest, _e in there["roots"]]
    assert None not in digests  # every root hashed: the workers read their hosts' disks
    rules = {f[0] for f in there["findings"]}
    assert {"unapproved", "orphans"} <= rules


def test_without_a_vmwarden_worker_the_master_sweeps_every_host_and_says_so(
    estate: Estate, cluster: Cluster, tmp_path: Path
) -> None:
    """A scheduler with no worker (all down, none started yet): every host is still swept,
    here, with the same findings, and the result says why."""
    scheduler, address = start_scheduler(tmp_path, cluster.certs)
    empty = Cluster(tmp_path, cluster.certs, address, scheduler, {})
    disks = _executor(empty)
    spread, on_workers = _spread(disks)
    try:
        result, there = _sweep(estate, tmp_path / "spread.sqlite", on_workers)
    finally:
        disks.close()
        empty.stop()
    _, here = _sweep(estate, tmp_path / "local.sqlite")
    assert there == here
    assert spread[0].by_worker == {} and result.on_workers == 0
    assert result.warnings == ["no vmwarden worker is up: every host was swept here"]


def test_a_scheduler_sweep_streams_only_what_the_workers_do(
    estate: Estate, cluster: Cluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With --scheduler, hosts are judged on workers, which neither inspect disks nor
    compare content lineage yet: such a sweep keeps the estate in memory (and says why)."""
    disks = _executor(cluster)
    try:
        with Store.open(f"sqlite:///{tmp_path / 'db.sqlite'}") as store:
            policy = parse_policy(estate.policy)

            def streams(**options: Any) -> bool:
                opts = SweepOptions(executor=disks, stream_hosts=1, **options)
                return Sweep(store, policy, actor="t", options=opts)._streams(estate.uris, False)

            assert not streams()  # inspection is on by default
            assert "disk inspection with --scheduler" in caplog.text
            assert streams(inspect=InspectionOptions(enabled=False))
            store.approve_template("signed", "sha256:" + "1" * 64, None, _signed(estate), "t")
            assert not streams(inspect=InspectionOptions(enabled=False))
            assert "signed templates with --scheduler" in caplog.text
    finally:
        disks.close()


def _signed(estate: Estate) -> dict[str, Any]:
    from vmwarden.engine.content_lineage import FINGERPRINT_KEY

    return {FINGERPRINT_KEY: estate.signature}

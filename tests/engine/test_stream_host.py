"""One host of a streaming sweep read where it runs (``engine/stream_host.py``): on a worker
(``DiskAccess.confine``: its ``--storage`` directories) a backing file outside them is never
opened, even when a pool of the host makes its directory an allowed one here."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from tests.conftest import qemu_img
from vmwarden.engine.fleetgen import FleetDisk, FleetPool, FleetVM, FleetVolume, write_fleet
from vmwarden.engine.stream_host import DiskAccess, HostJob, sweep_host
from vmwarden.policy import parse_policy

POLICY = """\
version: 1
templates: [{name: base, digest: "sha256:%s"}]
rules:
  - {name: unapproved, resource: vm, severity: high, filters: [not-approved-template]}
""" % ("0" * 64)


def _access(confine: Path | None) -> DiskAccess:
    memo: dict[tuple[str, int], str] = {}

    def refusal(path: str) -> str | None:
        inside = confine is None or os.path.realpath(path).startswith(f"{confine}/")
        return None if inside else f"refused {path}"

    return DiskAccess(
        lambda p, st: memo.get((p, st.st_ino)),
        lambda p, st, d: memo.__setitem__((p, st.st_ino), d),
        refusal=refusal,
        confine=(confine,) if confine is not None else None,
    )


def test_a_worker_reads_no_backing_file_outside_its_storage(tmp_path: Path) -> None:
    elsewhere, storage = tmp_path / "pool-a", tmp_path / "storage"
    elsewhere.mkdir()
    storage.mkdir()
    base, disk = elsewhere / "base.qcow2", storage / "disk.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", base, "16M")
    qemu_img("create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", disk)
    vm = FleetVM("5ca1ab1e-0000-4000-8000-000000000001", "vmw-s-clone", state="shutoff")
    vm.disks = [FleetDisk(str(disk))]
    pools = [
        FleetPool("vmw-s-a", str(elsewhere), [FleetVolume("base.qcow2", str(base))]),
        FleetPool("vmw-s-storage", str(storage), [FleetVolume("disk.qcow2", str(disk))]),
    ]
    uri = f"test://{write_fleet(tmp_path / 'host.xml', [vm], networks=['prod'], pools=pools)}"
    policy = parse_policy(POLICY)
    job = HostJob(policy, policy.catalog(), {}, (), {}, datetime.now(UTC))

    here = sweep_host(uri, job, _access(None))
    (chain,) = [d.chain for d in here.vms[0].disks]
    assert [layer.path for layer in chain] == [str(disk), str(base)]
    assert chain[-1].digest is not None and chain[-1].error is None  # read: a pool's file

    worker = sweep_host(uri, job, _access(storage))
    (chain,) = [d.chain for d in worker.vms[0].disks]
    assert chain[-1].digest is None
    assert "outside allowed directories" in (chain[-1].error or ""), chain
    assert [f.evidence.get("unknown") for f in worker.findings if f.rule == "unapproved"]

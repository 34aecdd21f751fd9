"""A sweep started through the API fails honestly, as ``vmwarden scan`` does (#10.5, #10.6).

The real ``ScanJobs`` runner over libvirt test-driver hosts and a real SQLite store: a job
whose host was unreachable or whose quarantine failed is ``failed`` with each problem in
``error``, and still carries the summary of what it did on the hosts it reached.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from vmwarden.api.jobs import ScanJobs
from vmwarden.engine.fleetgen import FleetNic, FleetVM, write_fleet
from vmwarden.store import Store

DEAD = "qemu+tcp://127.0.0.1:1/system"
POLICY = """\
version: 1
quarantine: {network: quarantine}
rules:
  - {name: unregistered-vm, resource: vm, severity: high, filters: [unregistered],
     actions: [quarantine]}
"""


def host(tmp_path: Path, name: str, networks: list[str]) -> str:
    vm = FleetVM(
        uuid=str(uuid.uuid5(uuid.NAMESPACE_DNS, name)),
        name=f"{name}-vm",
        state="shutoff",
        nics=[FleetNic("52:54:00:bb:00:01", "prod")],
    )
    return f"test://{write_fleet(tmp_path / f'{name}.xml', [vm], networks=networks)}"


def run_job(tmp_path: Path, uris: list[str]):
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    jobs = ScanJobs()
    with Store.open(f"sqlite:///{tmp_path / 'db.sqlite'}") as store:
        job = jobs.start(store, str(policy), uris, actor="admin", enforce=True)
        return jobs.wait(job.id, 120)


def test_job_with_a_dead_host_and_a_failed_quarantine_is_failed(tmp_path):
    ok = host(tmp_path, "ok", ["prod", "quarantine"])
    bare = host(tmp_path, "bare", ["prod"])
    job = run_job(tmp_path, [ok, bare, DEAD])
    assert job.status == "failed"
    assert f"host not scanned, nothing judged or done there: cannot connect to {DEAD}" in job.error
    assert "quarantine of VM bare-vm on bare failed: quarantine network" in job.error
    assert "ok-vm" not in job.error
    assert job.summary["hosts_unreachable"] == 1 and job.summary["actions_failed"] == 1
    assert job.summary["vms"] == 2


def test_clean_job_is_done(tmp_path):
    job = run_job(tmp_path, [host(tmp_path, "ok", ["prod", "quarantine"])])
    assert (job.status, job.error) == ("done", None)
    assert job.summary["actions"] == 1 and job.summary["actions_failed"] == 0

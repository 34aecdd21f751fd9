"""Looking inside EC2 instances: a sweep snapshots their volumes, reads the snapshots through
the EBS direct APIs, inspects them with dissect (served to the sandboxed worker), and deletes
the snapshots; ``vmwarden inspect ebs:snap-…`` reads an existing snapshot.

What moto lets these tests prove, and what it does not: moto's direct APIs cannot read a
snapshot made by ``ec2.create_snapshot`` (they answer 500), and its volumes hold no bytes. So
the sweep's snapshot step runs against moto exactly as against AWS -- ``create_snapshot`` of
the instance's volume, tagged ``vmwarden:scan``, journaled before, deleted after -- and only
*which snapshot the direct APIs then read* is mapped (``ScanSnapshots.readable``, the one
seam) to a snapshot this test wrote block by block with the real Debian image. Not proven
here: that AWS's snapshot of a live volume holds the volume's bytes (AWS's promise), and
waiting for a real snapshot to complete (moto's are completed at once).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.connectors.aws.ec2_estate import ami, launch, network
from tests.connectors.aws.snapshot_fixture import WrittenSnapshot
from vmwarden.connectors.aws import connection
from vmwarden.connectors.aws.scan_snapshots import SCAN_TAG, ScanJournal, ScanSnapshots
from vmwarden.connectors.base import open_connector
from vmwarden.engine.inspection import InspectionOptions
from vmwarden.engine.lineage import Lineage
from vmwarden.engine.scan import Sweep, SweepOptions
from vmwarden.policy import parse_policy
from vmwarden.store import Store

POLICY = """\
version: 1
rules:
  - name: forbidden
    resource: vm
    severity: high
    filters: [{type: package, installed: [telnetd]}]
  - name: baseline
    resource: vm
    severity: medium
    filters: [{type: package, missing: [chrony]}]
"""


def _scan_snapshots(ec2: Any) -> list[dict[str, Any]]:
    snaps = ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]
    return [s for s in snaps if any(t["Key"] == SCAN_TAG for t in s.get("Tags") or [])]


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The scan-snapshot journal goes under the test's directory (XDG_STATE_HOME)."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path / "state"


order: list[str] = []  # "take" / "read", as the sweep did them


@pytest.fixture
def reads_debian(
    debian_snapshot: WrittenSnapshot, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """Every scan snapshot is read as the Debian snapshot (moto cannot read its own); the
    map of scan snapshot id → volume is what the sweep took."""
    taken: dict[str, str] = {}
    order.clear()

    class DebianEverywhere(ScanSnapshots):
        def _create(self, volume_id: str, token: str | None = None) -> str:
            order.append("take")
            return super()._create(volume_id, token)

        def readable(self, snapshot_id: str, volume_id: str) -> str:
            order.append("read")
            taken[snapshot_id] = volume_id
            return debian_snapshot.snapshot_id

    monkeypatch.setattr(connection, "SCAN_SNAPSHOTS", DebianEverywhere)
    return taken


def test_a_sweep_reads_instances_through_scan_snapshots_and_deletes_them(
    ec2: Any, state_dir: Path, reads_debian: dict[str, str], tmp_path: Path
) -> None:
    image = ami(ec2, "golden")
    subnets = network(ec2, "10.20.0.0/16", {"a": "10.20.1.0/24"})
    web = launch(ec2, image, subnets["a"], {"Name": "web"})
    stopped = launch(ec2, image, subnets["a"], {"Name": "old"})
    ec2.stop_instances(InstanceIds=[stopped])
    volumes = {
        m["Ebs"]["VolumeId"]
        for r in ec2.describe_instances()["Reservations"]
        for i in r["Instances"]
        if i["State"]["Name"] != "terminated"
        for m in i.get("BlockDeviceMappings") or []
    }
    policy = parse_policy(POLICY)
    options = SweepOptions(inspect=InspectionOptions(enabled=True, timeout=120))
    with Store.open(f"sqlite:///{tmp_path / 'w.db'}") as store:
        result = Sweep(store, policy, actor="t", options=options).run(["aws://us-east-1"])
    by_id = {vm.id: vm for vm in result.vms}
    for iid in (web, stopped):  # running or stopped: read offline from a snapshot
        guest = by_id[iid].guest
        assert guest is not None and guest.os_name is not None, iid
        assert "debian" in guest.os_name.lower()
        assert "apt" in {p.name for p in guest.packages}
        # the scan snapshot's time is not the disk's: no mtime for ``dormant`` to trust
        assert all(d.chain[0].mtime is None for d in by_id[iid].disks)
    found = {(f.rule, f.id) for f in result.findings}
    # judged on what the disks hold: minbase has no chrony (nor telnetd)
    assert found == {("baseline", web), ("baseline", stopped)}, result.findings
    # one scan snapshot per volume, each of the volume, and none left afterwards
    assert sorted(reads_debian.values()) == sorted(volumes)
    # every snapshot was started before the first was read (a sweep waits once, not per disk)
    assert order == ["take"] * len(volumes) + ["read"] * len(volumes), order
    assert _scan_snapshots(ec2) == []
    assert ScanJournal().entries() == {}


def test_an_event_path_never_snapshots_a_volume_a_reconcile_does(
    ec2: Any, state_dir: Path, reads_debian: dict[str, str], tmp_path: Path
) -> None:
    """The watch daemon enriches a VM's disks on each of its events with no downloads
    (``remote_hashing=False``): on EC2 opening a disk is a snapshot of the whole volume
    (minutes on AWS, waited for), so an event never opens one; a reconcile does."""
    image = ami(ec2, "golden")
    subnets = network(ec2, "10.21.0.0/16", {"a": "10.21.1.0/24"})
    web = launch(ec2, image, subnets["a"], {"Name": "web"})
    with Store.open(f"sqlite:///{tmp_path / 'e.db'}") as store:
        for hashing, takes in ((False, 0), (True, 1)):
            with open_connector("aws://us-east-1") as conn:
                inv = conn.inventory()
            inv.vms = [vm for vm in inv.vms if vm.id == web]
            lineage = Lineage.for_store(store, [], remote=True, remote_hashing=hashing)
            order.clear()
            try:
                lineage.enrich(inv)
            finally:
                lineage.close()
            assert order.count("take") == takes, (hashing, order)
            assert [d.chain[0].path for d in inv.vms[0].disks]  # the inventory's chain stays
    assert _scan_snapshots(ec2) == []


def test_a_crashed_sweep_leaves_a_journal_the_next_run_cleans(
    ec2: Any, state_dir: Path, debian_snapshot: WrittenSnapshot, aws_env: str
) -> None:
    vol = ec2.create_volume(AvailabilityZone="us-east-1a", Size=1)["VolumeId"]
    foreign = ec2.create_snapshot(
        VolumeId=vol,
        TagSpecifications=[{"ResourceType": "snapshot", "Tags": [{"Key": SCAN_TAG, "Value": "x"}]}],
    )["SnapshotId"]
    # a sweep process killed after its snapshot was made: nothing deleted it
    code = (
        "import os\n"
        "from vmwarden.connectors.base import open_connector\n"
        "c = open_connector('aws://us-east-1')\n"
        f"sid = c.scan_snapshots().take({vol!r})\n"
        "print(sid, flush=True)\n"
        "os.kill(os.getpid(), 9)\n"
    )
    env = {**os.environ}
    ran = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert ran.returncode == -signal.SIGKILL, ran.stderr
    leaked = ran.stdout.strip()
    assert leaked.startswith("snap-")
    assert {s["SnapshotId"] for s in _scan_snapshots(ec2)} == {leaked, foreign}
    (entry,) = ScanJournal().entries().values()
    assert (entry["snapshot"], entry["volume"]) == (leaked, vol)
    # the next connection that reads a disk deletes it; another's tagged snapshot stays
    with connection.AwsConnector("aws://us-east-1") as conn:
        deleted = conn.scan_snapshots().sweep_leftovers()
        assert conn.scan_snapshots().sweep_leftovers() == []  # once per connection
    assert deleted == [leaked]
    assert {s["SnapshotId"] for s in _scan_snapshots(ec2)} == {foreign}
    assert ScanJournal().entries() == {}


def test_inspect_an_existing_snapshot_from_the_command_line(
    debian_snapshot: WrittenSnapshot, tmp_path: Path, aws_env: str
) -> None:
    ec2 = boto3.client("ec2", region_name="us-east-1")
    before = ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]
    ran = subprocess.run(
        [sys.executable, "-m", "vmwarden.cli.main", "inspect",
         f"ebs:{debian_snapshot.snapshot_id}", "--connect", "aws://us-east-1"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    doc = json.loads(ran.stdout)
    assert doc["path"] == f"ebs:{debian_snapshot.snapshot_id}"
    assert doc["format"] == "raw" and doc["virtual_size"] == 2 * 1024**3
    assert doc["guest"] is not None, doc.get("guest_error")
    assert "debian" in (doc["guest"]["os_name"] or "").lower()
    assert any(p["name"] == "apt" for p in doc["guest"]["packages"])
    assert doc["reads"]["requests"] > 0 and doc["reads"]["snapshot"] == debian_snapshot.snapshot_id
    assert "test-secret-do-not-log" not in ran.stdout + ran.stderr
    # an existing snapshot is only read: nothing created, nothing deleted
    assert ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"] == before
    # region from AWS_REGION; a bad id is one line, exit 2
    env = {**os.environ, "AWS_REGION": "us-east-1"}
    bad = subprocess.run(
        [sys.executable, "-m", "vmwarden.cli.main", "inspect", "ebs:snap-nope"],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )  # fmt: skip
    assert bad.returncode == 2 and "not an EBS snapshot id" in bad.stderr
    assert "Traceback" not in bad.stderr

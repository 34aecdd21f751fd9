"""EC2 power, snapshot and tag actions against moto's server, checked with boto3's own view.

moto records no hibernation (``stop_instances(Hibernate=True)`` is a plain stop there), so
``pause`` is shown to stop the instance and keep it, not that its memory survives.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.connectors.aws.ec2_estate import ami, launch, network
from vmwarden.connectors.aws.connection import AwsConnector
from vmwarden.errors import DomainGoneError
from vmwarden.model.vm import State, VmMeta

URI = "aws://us-east-1"


@pytest.fixture
def instance(ec2: Any) -> str:
    subnets = network(ec2, "10.4.0.0/16", {"app": "10.4.1.0/24"})
    iid = launch(
        ec2, ami(ec2, "vmw-a1-base"), subnets["app"], {"Name": "vmw-a1-act", "team": "blue"}
    )
    data = ec2.create_volume(AvailabilityZone="us-east-1a", Size=1)["VolumeId"]
    ec2.attach_volume(VolumeId=data, InstanceId=iid, Device="/dev/sdf")
    return iid


def _state(ec2: Any, iid: str) -> str:
    inst = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    return str(inst["State"]["Name"])


@pytest.mark.parametrize("action", ["pause", "shutdown", "destroy"])
def test_pause_shutdown_and_destroy_stop_and_never_terminate(
    ec2: Any, instance: str, action: str
) -> None:
    with AwsConnector(URI) as conn:
        assert conn.domain_state(instance) == State.RUNNING
        getattr(conn, action)(instance)
        assert conn.domain_state(instance) == State.SHUTOFF
    assert _state(ec2, instance) == "stopped"  # stopped, still there: never terminated
    with AwsConnector(URI) as conn:
        conn.resume(instance)
    assert _state(ec2, instance) == "running"


def test_snapshot_takes_one_tagged_snapshot_per_volume(ec2: Any, instance: str) -> None:
    inst = ec2.describe_instances(InstanceIds=[instance])["Reservations"][0]["Instances"][0]
    volumes = {m["Ebs"]["VolumeId"]: m["DeviceName"] for m in inst["BlockDeviceMappings"]}
    assert len(volumes) == 2
    with AwsConnector(URI) as conn:
        ids = conn.snapshot(instance, "vmwarden-r-20260101", "evidence: rogue").split(",")
    snaps = ec2.describe_snapshots(SnapshotIds=ids)["Snapshots"]
    assert sorted(s["VolumeId"] for s in snaps) == sorted(volumes)
    for snap in snaps:
        tags = {t["Key"]: t["Value"] for t in snap["Tags"]}
        assert tags["vmwarden:snapshot"] == "vmwarden-r-20260101"
        assert tags["vmwarden:instance"] == instance
        assert tags["vmwarden:device"] == volumes[snap["VolumeId"]]
        assert snap["Description"] == "evidence: rogue"


def test_metadata_is_written_as_tags_and_cleared_without_touching_others(
    ec2: Any, instance: str
) -> None:
    meta = VmMeta(
        owner="alice",
        classification="pci",
        template="golden",
        registered=False,
        tags={"ticket": "A1-7", "odd": "a<b>&'\" x"},
    )
    with AwsConnector(URI) as conn:
        conn.set_metadata(instance, meta)
    inst = ec2.describe_instances(InstanceIds=[instance])["Reservations"][0]["Instances"][0]
    tags = {t["Key"]: t["Value"] for t in inst["Tags"]}
    assert tags["vmwarden:owner"] == "alice" and tags["vmwarden:registered"] == "no"
    assert tags["vmwarden:tag:odd"] == "a<b>&'\" x"
    with AwsConnector(URI) as conn:  # a new connection: stored in EC2
        assert conn.get_metadata(instance) == meta
        conn.set_metadata(instance, VmMeta(owner="bob"))
        assert conn.get_metadata(instance) == VmMeta(owner="bob")
    inst = ec2.describe_instances(InstanceIds=[instance])["Reservations"][0]["Instances"][0]
    tags = {t["Key"]: t["Value"] for t in inst["Tags"]}
    assert tags == {"Name": "vmw-a1-act", "team": "blue", "vmwarden:owner": "bob"}


def test_an_unknown_instance_is_gone(ec2: Any, instance: str) -> None:
    with AwsConnector(URI) as conn, pytest.raises(DomainGoneError, match="i-00000000"):
        conn.shutdown("i-0000000000000000f")
    ec2.terminate_instances(InstanceIds=[instance])
    with AwsConnector(URI) as conn, pytest.raises(DomainGoneError):
        conn.snapshot(instance, "n", "d")

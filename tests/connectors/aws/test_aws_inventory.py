"""EC2 inventory through the ``aws`` connector, against moto's HTTP server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.connectors.aws.ec2_estate import ami, launch, network, tag_spec
from vmwarden.connectors.aws.inventory import stopped_at
from vmwarden.connectors.base import inventory_all, open_connector
from vmwarden.engine.inspection import InspectionOptions
from vmwarden.engine.scan import Sweep, SweepOptions
from vmwarden.model.estate import HostInventory
from vmwarden.model.vm import State
from vmwarden.policy import parse_policy
from vmwarden.store import Store


def test_instances_map_to_neutral_vms(ec2: Any) -> None:
    image = ami(ec2, "golden")
    subnets = network(ec2, "10.1.0.0/16", {"pci-a": "10.1.1.0/24"})
    vol = ec2.create_volume(AvailabilityZone="us-east-1a", Size=8, Encrypted=True)["VolumeId"]
    iid = launch(
        ec2,
        image,
        subnets["pci-a"],
        {
            "Name": "payments-1",
            "vmwarden:owner": "alice",
            "vmwarden:classification": "pci",
            "vmwarden:registered": "yes",
        },
    )
    ec2.get_waiter("instance_running").wait(InstanceIds=[iid])
    ec2.attach_volume(VolumeId=vol, InstanceId=iid, Device="/dev/sdf")
    nameless = launch(ec2, image, subnets["pci-a"], {"team": "x"})
    ec2.stop_instances(InstanceIds=[nameless])

    with open_connector("aws://us-east-1") as conn:
        inv = conn.inventory()
    assert inv.local is False and inv.host == "aws:us-east-1"
    by_id = {vm.id: vm for vm in inv.vms}
    vm = by_id[iid]
    assert (vm.name, vm.state, vm.host, vm.template_id) == ("payments-1", State.RUNNING, "", image)
    assert (vm.meta.owner, vm.meta.classification, vm.meta.registered) == ("alice", "pci", True)
    (nic,) = vm.nics
    eni = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0][
        "NetworkInterfaces"
    ][0]
    assert nic.mac == eni["MacAddress"] and nic.target_dev == eni["NetworkInterfaceId"]
    assert (nic.network, nic.network_aliases) == (subnets["pci-a"], ["pci-a"])
    assert eni["PrivateIpAddress"] in nic.addresses
    disks = {d.target: d for d in vm.disks}
    assert disks["/dev/sdf"].encrypted is True
    for disk in vm.disks:  # never a local path: read through a snapshot (open_disk)
        assert disk.chain[0].path.startswith("ebs://us-east-1/vol-")
        assert disk.chain[0].type == "volume" and disk.chain[0].digest is None
    other = by_id[nameless]
    assert other.name == nameless and other.meta.registered is None
    assert other.state in (State.SHUTOFF, State.SHUTDOWN)


def test_terminated_instances_are_gone(ec2: Any) -> None:
    image = ami(ec2, "golden")
    subnets = network(ec2, "10.2.0.0/16", {"a": "10.2.1.0/24"})
    keep = launch(ec2, image, subnets["a"], {})
    gone = launch(ec2, image, subnets["a"], {})
    ec2.terminate_instances(InstanceIds=[gone])
    with open_connector("aws://us-east-1") as conn:
        assert [vm.id for vm in conn.inventory().vms] == [keep]


def test_one_paginated_describe_per_resource_type_not_per_instance(ec2: Any) -> None:
    image = ami(ec2, "golden")
    subnets = network(ec2, "10.3.0.0/16", {"a": "10.3.1.0/24"})
    ec2.run_instances(ImageId=image, MinCount=40, MaxCount=40, SubnetId=subnets["a"])
    calls: list[str] = []
    with open_connector("aws://us-east-1") as conn:
        conn._ec2.meta.events.register(
            "before-call.ec2", lambda model, **_: calls.append(model.name)
        )
        inv = conn.inventory()
    assert len(inv.vms) == 40
    assert sorted(set(calls)) == [
        "DescribeImages",  # the account's own, then the others instances use, by id
        "DescribeInstances",
        "DescribeSecurityGroups",
        "DescribeSnapshots",
        "DescribeSubnets",
        "DescribeVolumes",
        "DescribeVpcs",
    ]
    assert len(calls) <= 14, calls  # pages, not one call per instance


def test_several_regions_in_one_run(aws_env: str) -> None:
    for region, cidr in (("us-east-1", "10.4.0.0/16"), ("eu-west-1", "10.5.0.0/16")):
        client = boto3.client("ec2", region_name=region)
        image = client.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        vpc = client.create_vpc(CidrBlock=cidr)["Vpc"]["VpcId"]
        sub = client.create_subnet(VpcId=vpc, CidrBlock=cidr.replace("0.0/16", "1.0/24"))
        launch(client, image, sub["Subnet"]["SubnetId"], {"Name": f"web-{region}"})
    results = inventory_all(["aws://us-east-1", "aws://eu-west-1"])
    assert all(isinstance(r, HostInventory) for r in results), results
    names = [[vm.name for vm in r.vms] for r in results if isinstance(r, HostInventory)]
    assert names == [["web-us-east-1"], ["web-eu-west-1"]]


def test_a_dedicated_host_is_the_vms_host(ec2: Any) -> None:
    image = ami(ec2, "golden")
    subnets = network(ec2, "10.6.0.0/16", {"a": "10.6.1.0/24"})
    host = ec2.allocate_hosts(AvailabilityZone="us-east-1a", InstanceType="t3.micro", Quantity=1)
    host_id = host["HostIds"][0]
    iid = launch(
        ec2,
        image,
        subnets["a"],
        {},
        Placement={"HostId": host_id, "Tenancy": "host"},
    )
    with open_connector("aws://us-east-1") as conn:
        (vm,) = [v for v in conn.inventory().vms if v.id == iid]
    assert vm.host == host_id


__all__ = ["tag_spec"]


def test_the_connector_meets_the_contract_and_reads_only_ebs_names(ec2: Any) -> None:
    from vmwarden.connectors.base import Connector, DiskUnavailableError

    with open_connector("aws://us-east-1") as conn:
        assert isinstance(conn, Connector)
        for name, why in [
            ("vol-0abc", "not an EBS disk"),
            ("/etc/passwd", "not an EBS disk"),
            ("ebs://eu-west-1/vol-0123456789abcdef0", "in eu-west-1, not us-east-1"),
            ("ebs:snap-x", "not an EBS snapshot id"),
        ]:
            with pytest.raises(DiskUnavailableError, match=why):
                conn.open_disk(name)


def test_times_volumes_and_stale_snapshots_are_inventoried(ec2: Any, tmp_path: Path) -> None:
    image = ami(ec2, "golden")
    subnets = network(ec2, "10.10.0.0/16", {"a": "10.10.1.0/24"})
    before = datetime.now(UTC) - timedelta(seconds=5)
    launch(ec2, image, subnets["a"], {"Name": "up"})
    down = launch(ec2, image, subnets["a"], {"Name": "down"})
    ec2.stop_instances(InstanceIds=[down])
    after = datetime.now(UTC) + timedelta(seconds=5)
    orphan = ec2.create_volume(AvailabilityZone="us-east-1a", Size=3)["VolumeId"]
    kept = ec2.create_snapshot(VolumeId=orphan)["SnapshotId"]  # its volume exists: a backup
    gone_vol = ec2.create_volume(AvailabilityZone="us-east-1a", Size=2)["VolumeId"]
    stale = ec2.create_snapshot(VolumeId=gone_vol)["SnapshotId"]
    ec2.delete_volume(VolumeId=gone_vol)
    ami_snaps = {
        m["Ebs"]["SnapshotId"]
        for m in ec2.describe_images(ImageIds=[image])["Images"][0]["BlockDeviceMappings"]
        if "Ebs" in m
    }

    with open_connector("aws://us-east-1") as conn:
        inv = conn.inventory()
    vms = {vm.name: vm for vm in inv.vms}
    for vm in vms.values():
        assert vm.started_at is not None and before <= vm.started_at <= after
        assert vm.created is not None and before <= vm.created <= after
    assert vms["up"].powered_off_at is None
    off = vms["down"].powered_off_at
    assert vms["down"].state == State.SHUTOFF and off is not None and before <= off <= after
    pools = {p.name: p for p in inv.pools}
    vol_paths = {v.path for v in pools["ebs"].volumes}
    assert f"ebs://us-east-1/{orphan}" in vol_paths
    # attached, unencrypted root volumes: the instances' disks, not listed again
    assert not {d.chain[0].path for vm in inv.vms for d in vm.disks} & vol_paths
    assert all(d.encrypted is False for vm in inv.vms for d in vm.disks)
    assert [v.path for v in pools["ebs-snapshots"].volumes] == [f"ebs:{stale}"]
    assert f"ebs:{kept}" not in vol_paths and not ami_snaps & {stale, kept}

    # in a sweep they are images: the unattached volume and the stale snapshot orphaned
    policy = parse_policy(
        "version: 1\nrules:\n  - {name: orphans, resource: image, severity: low,"
        " filters: [orphaned]}\n"
    )
    options = SweepOptions(inspect=InspectionOptions(enabled=False))
    with Store.open(f"sqlite:///{tmp_path / 'w.db'}") as store:
        result = Sweep(store, policy, actor="t", options=options).run(["aws://us-east-1"])
    kinds = {img.path: img.kind for img in result.images}
    assert kinds[f"ebs://us-east-1/{orphan}"] == "orphaned"
    assert kinds[f"ebs:{stale}"] == "orphaned"
    assert all(kinds[d.chain[0].path] == "attached" for vm in inv.vms for d in vm.disks)
    orphans = {f.id for f in result.findings if f.rule == "orphans"}
    assert orphans == {f"ebs://us-east-1/{orphan}", f"ebs:{stale}"}


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("User initiated (2024-05-01 12:34:56 GMT)", datetime(2024, 5, 1, 12, 34, 56, tzinfo=UTC)),
        ("Server.ScheduledStop: Stopped due to scheduled retirement", None),
        ("", None),
        ("User initiated (2024-13-45 99:00:00 GMT)", None),
    ],
)
def test_when_stopped_is_what_aws_says_or_unknown(reason: str, expected: datetime | None) -> None:
    assert stopped_at({"StateTransitionReason": reason}) == expected

"""EC2 inventory through the ``aws`` connector, against moto's HTTP server."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from tests.connectors.aws.ec2_estate import ami, launch, network, tag_spec
from vmwarden.connectors.base import inventory_all, open_connector
from vmwarden.model.estate import HostInventory
from vmwarden.model.vm import State


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
        "DescribeInstances",
        "DescribeSecurityGroups",
        "DescribeSubnets",
        "DescribeVolumes",
        "DescribeVpcs",
    ]
    assert len(calls) <= 12, calls  # pages, not one call per instance


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

"""The EC2 backend of the conformance suite: its own moto server (``ThreadedMotoServer`` on a
free loopback port), an estate made with boto3 directly (never through vmwarden).

Instances ``vmw-a1-conf-<role>`` run the stock AMI, each with its groups on its ENIs (moto
reports an attached ENI's groups as the union of its own and the instance's launch groups,
so launch groups would hide isolation) and a second ENI in a subnet of *another VPC* for the
roles with two NICs: isolation then needs one quarantine group per VPC. They are stopped
before the suite looks (the roles are "shut off"). Quarantine goes to
``vmw-a1-conf-quarantine``, created by the connector.

``open_disk`` reads EBS snapshots through the EBS direct APIs: the Debian template, the
lineage fixture's used full clone of it and an unrelated build, each converted to raw and
written into a snapshot block by block (moto serves the EBS direct APIs only for snapshots
written so). A snapshot's size is its volume's, in whole GiB, so the local copy the suite
compares with is the raw image extended with zeros to that size (what EBS reads there too).

EC2 names no host for an instance on shared hardware (its VM host is ""), and the suite reads
an empty ``VmSpec.host`` as "the connection's host" (``aws:REGION``). The instances are
therefore placed on a dedicated host (``allocate_hosts``): the VM's host is that host's id, as
the inventory and the polled events name it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.connectors.aws.ec2_estate import tag_spec
from tests.connectors.aws.snapshot_fixture import BLOCK, raw_disk, write_snapshot
from tests.connectors.conformance.conftest import Estate, VmSpec
from tests.connectors.conformance.libvirt_backend import TEMPLATE, UNRELATED, full_clone
from vmwarden.model.isolation import QuarantineSpec
from vmwarden.model.vm import State

PREFIX = "vmw-a1-conf"
REGION = "us-east-1"
ROLES = {"plain": 2, "isolate": 2, "crash": 2, "events": 1}
_ENV = (
    "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_EC2_METADATA_DISABLED",
    "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_PROFILE", "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
)  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def moto_backend() -> Iterator[AwsBackend]:
    """A moto server for the module; the environment boto3 reads (children inherit it)
    points there with dummy keys, and is put back afterwards."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    old = {k: os.environ.get(k) for k in _ENV}
    home = Path(tempfile.mkdtemp(prefix=f"{PREFIX}-"))
    for k in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN"):
        os.environ.pop(k, None)
    os.environ.update(
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
        AWS_ACCESS_KEY_ID="AKIATESTTESTTESTTEST",
        AWS_SECRET_ACCESS_KEY="test-secret-do-not-log",
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=str(home / "config"),
        AWS_SHARED_CREDENTIALS_FILE=str(home / "credentials"),
    )
    try:
        yield AwsBackend()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()


class AwsBackend:
    name = "aws"

    def __init__(self) -> None:
        import boto3

        self.ec2: Any = boto3.client("ec2", region_name=REGION)
        self.ebs: Any = boto3.client("ebs", region_name=REGION)

    def build(self, work: Path) -> Estate:
        for image in (TEMPLATE, UNRELATED, full_clone()):
            if not image.is_file():
                raise AssertionError(f"test image missing: {image} (make test-images)")
        ec2 = self.ec2
        base = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        subnets, groups = [], []
        for i in (1, 2):  # two VPCs, a subnet and a group in each
            vpc = ec2.create_vpc(CidrBlock=f"10.{40 + i}.0.0/16")["Vpc"]["VpcId"]
            subnets.append(
                ec2.create_subnet(
                    VpcId=vpc,
                    CidrBlock=f"10.{40 + i}.1.0/24",
                    AvailabilityZone=f"{REGION}a",
                    TagSpecifications=tag_spec("subnet", {"Name": f"{PREFIX}-net{i}"}),
                )["Subnet"]["SubnetId"]
            )
            groups.append(
                ec2.create_security_group(
                    GroupName=f"{PREFIX}-app{i}", Description="app", VpcId=vpc
                )["GroupId"]
            )
        host = ec2.allocate_hosts(
            AvailabilityZone=f"{REGION}a", InstanceType="t3.micro", Quantity=1
        )["HostIds"][0]
        vms = {
            role: self._launch(base, role, n, subnets, groups, host) for role, n in ROLES.items()
        }
        ec2.stop_instances(InstanceIds=[v.id for v in vms.values()])
        snaps = {
            role: self._snapshot(source, work / f"{role}.raw")
            for role, source in (
                ("template", TEMPLATE), ("clone", full_clone()), ("unrelated", UNRELATED)
            )
        }  # fmt: skip
        return Estate(
            uri=f"aws://{REGION}",
            host=f"aws:{REGION}",
            vms=vms,
            spec=QuarantineSpec(aws_security_group=f"{PREFIX}-quarantine"),
            image=f"ebs:{snaps['template'][0]}",
            image_local=snaps["template"][1],
            template=f"ebs:{snaps['template'][0]}",
            full_clone=f"ebs:{snaps['clone'][0]}",
            unrelated=f"ebs:{snaps['unrelated'][0]}",
            missing="ebs:snap-00000000000000000",
            start_bound=5.0,  # polled (no SQS queue in the URI): the poll interval is half
        )

    def _launch(
        self, base: str, role: str, n_nics: int, subnets: list[str], groups: list[str], host: str
    ) -> VmSpec:
        ec2 = self.ec2
        name = f"{PREFIX}-{role}"
        iid = ec2.run_instances(
            ImageId=base,
            MinCount=1,
            MaxCount=1,
            InstanceType="t3.micro",
            Placement={"HostId": host, "Tenancy": "host"},
            NetworkInterfaces=[{"DeviceIndex": 0, "SubnetId": subnets[0], "Groups": [groups[0]]}],
            TagSpecifications=tag_spec("instance", {"Name": name}),
        )["Instances"][0]["InstanceId"]
        for index in range(1, n_nics):
            eni = ec2.create_network_interface(SubnetId=subnets[1], Groups=[groups[1]])
            ec2.attach_network_interface(
                NetworkInterfaceId=eni["NetworkInterface"]["NetworkInterfaceId"],
                InstanceId=iid,
                DeviceIndex=index,
            )
        inst = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
        enis = ec2.describe_network_interfaces(
            Filters=[{"Name": "attachment.instance-id", "Values": [iid]}]
        )["NetworkInterfaces"]
        nics = frozenset((e["MacAddress"].lower(), e["SubnetId"]) for e in enis)
        disks = tuple(f"ebs://{REGION}/{m['Ebs']['VolumeId']}" for m in inst["BlockDeviceMappings"])
        return VmSpec(iid, name, State.SHUTOFF, nics, disks, host=host)

    def _snapshot(self, source: Path, raw: Path) -> tuple[str, Path]:
        """``source`` written into a snapshot, and a local copy of what EBS reads of it: the
        raw image extended with zeros to the snapshot's whole GiB, every byte allocated
        (a sparse copy would show the signature's sampler holes that EBS reads as data)."""
        disk = raw_disk(source, raw)
        sid = write_snapshot(self.ebs, self.ec2, disk)
        local = raw.with_suffix(".full")
        subprocess.run(
            ["qemu-img", "convert", "-S", "0", "-f", "raw", "-O", "raw", str(raw), str(local)],
            check=True, capture_output=True,
        )  # fmt: skip
        raw.unlink()
        size = -(-disk.size // 1024**3) * 1024**3
        with local.open("r+b") as f:
            f.seek(disk.size)
            for _ in range((size - disk.size) // BLOCK):
                f.write(bytes(BLOCK))
        assert local.stat().st_size == size
        return sid, local

    def start(self, vm_id: str) -> None:
        self.ec2.start_instances(InstanceIds=[vm_id])

    def stop(self, vm_id: str) -> None:
        self.ec2.stop_instances(InstanceIds=[vm_id])

    def teardown(self) -> None:
        """Nothing: the moto server, and all it holds, goes with the module (``moto_backend``)."""

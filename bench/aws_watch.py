"""EC2 watch and quarantine (#14.5/#14.6) against moto's server (its own process, real boto3).

Side by side in one run, on one estate (``instances`` instances in two VPCs):

- ``start seen, SQS``: from ``events.put_events`` of an EC2 state-change event returning (the
  moment AWS would emit it: moto's ``start_instances`` emits none, so the bench sends it right
  after the start, and it goes rule -> SQS target as EventBridge routes it) to the
  ``started`` ``VmEvent`` arriving from ``SqsFeed`` (``aws://REGION?sqs=QUEUE``). AWS's own
  delivery delay (typically well under a second) is not in it.
- ``start seen, inventory poll every 5 s``: the same starts through ``PollFeed`` (the
  engine's default for EC2 without a queue): what ``watch`` gets with no set-up.
- ``quarantine + release``: one instance with an ENI in each VPC, through ``Quarantiner``
  (SQLite journal, records, group lookup per VPC, one modify per ENI, the same back) against
  the floor any tool pays: the four bare ``modify_network_interface_attribute`` calls that
  move both ENIs and put them back. Interleaved; ``ratio_to_floor`` on medians.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REGION = "us-east-1"
QUEUE = "vmw-a1-bench-events"
CHANGE = "EC2 Instance State-change Notification"
_ENV = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION",
        "AWS_EC2_METADATA_DISABLED")  # fmt: skip


@contextmanager
def _moto() -> Iterator[str]:
    """moto's server in a process of its own (not this one's GIL); boto3's env at it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in _ENV}
    try:
        for _ in range(100):
            try:
                req = urllib.request.Request(f"{url}/moto-api/reset", method="POST")
                urllib.request.urlopen(req, timeout=2).close()
                break
            except OSError:
                time.sleep(0.1)
        os.environ.update(AWS_ENDPOINT_URL=url, AWS_ACCESS_KEY_ID="AKIABENCHBENCHBENCH1",
                          AWS_SECRET_ACCESS_KEY="bench-secret", AWS_DEFAULT_REGION=REGION,
                          AWS_EC2_METADATA_DISABLED="true")  # fmt: skip
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _ms_row(name: str, lags: list[float], note: str) -> dict[str, Any]:
    ms = sorted(x * 1000 for x in lags)
    return {
        "name": name, "min": min(lags), "median": statistics.median(lags), "max": max(lags),
        "n": len(ms), "p50_ms": statistics.median(ms),
        "p95_ms": ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))], "max_ms": ms[-1],
        "note": note,
    }  # fmt: skip


def _estate(ec2: Any, instances: int) -> tuple[list[str], list[str], list[str]]:
    """(subnet per VPC, app group per VPC, the instances' ids), all stopped."""
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    subnets, groups = [], []
    for v in (1, 2):
        vpc = ec2.create_vpc(CidrBlock=f"10.{v}.0.0/16")["Vpc"]["VpcId"]
        subnets.append(ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.{v}.1.0/24",
                                         AvailabilityZone=f"{REGION}a")["Subnet"]["SubnetId"])  # fmt: skip
        groups.append(ec2.create_security_group(GroupName=f"app{v}", Description="app",
                                                VpcId=vpc)["GroupId"])  # fmt: skip
    resp = ec2.run_instances(
        ImageId=image, MinCount=instances, MaxCount=instances, InstanceType="t3.micro",
        NetworkInterfaces=[{"DeviceIndex": 0, "SubnetId": subnets[0], "Groups": [groups[0]]}],
    )  # fmt: skip
    ids = [i["InstanceId"] for i in resp["Instances"]]
    ec2.stop_instances(InstanceIds=ids)
    return subnets, groups, ids


async def _starts(uri: str, ec2: Any, events: Any, ids: list[str], kind: str) -> list[float]:
    """Start each instance; the lag from its start being announced to its ``started`` event."""
    from vmwarden.connectors.base import open_event_feed
    from vmwarden.engine.watch.poll import POLL_EVERY, PollFeed

    got: dict[str, float] = {}
    arrived = asyncio.Event()

    def on_event(event: Any) -> None:
        if event.kind == "started":
            got.setdefault(event.vm_id, event.received)
            arrived.set()

    def on_close(why: str) -> None:
        raise RuntimeError(f"feed lost: {why}")

    feed: Any
    if kind == "sqs":
        feed = open_event_feed(uri, on_event=on_event, on_close=on_close)
    else:
        feed = PollFeed(uri, on_event=on_event, on_close=on_close, interval=POLL_EVERY)
    feed.attach(asyncio.get_running_loop())
    await asyncio.to_thread(feed.open)
    lags: list[float] = []
    try:
        for iid in ids:
            await asyncio.to_thread(ec2.start_instances, InstanceIds=[iid])
            if kind == "sqs":
                detail = json.dumps({"instance-id": iid, "state": "running"})
                entry = {"Source": "aws.ec2", "DetailType": CHANGE, "Detail": detail}
                await asyncio.to_thread(events.put_events, Entries=[entry])
            done = time.monotonic()
            deadline = done + 60
            while iid not in got and time.monotonic() < deadline:
                arrived.clear()
                try:
                    await asyncio.wait_for(arrived.wait(), max(0.0, deadline - time.monotonic()))
                except TimeoutError:
                    break
            if iid not in got:
                raise RuntimeError(f"{kind}: start of {iid} not seen in 60 s")
            lags.append(max(0.0, got[iid] - done))
    finally:
        await asyncio.to_thread(feed.close)
    return lags


def _quarantine(ec2: Any, subnets: list[str], groups: list[str], repeats: int,
                tmp: Path) -> list[dict[str, Any]]:  # fmt: skip
    from vmwarden.connectors.aws.connection import AwsConnector
    from vmwarden.enforce import Quarantiner
    from vmwarden.model.isolation import QuarantineSpec
    from vmwarden.store import Store

    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    iid = ec2.run_instances(
        ImageId=image, MinCount=1, MaxCount=1,
        NetworkInterfaces=[{"DeviceIndex": 0, "SubnetId": subnets[0], "Groups": [groups[0]]}],
    )["Instances"][0]["InstanceId"]  # fmt: skip
    eni = ec2.create_network_interface(SubnetId=subnets[1], Groups=[groups[1]])
    ec2.attach_network_interface(NetworkInterfaceId=eni["NetworkInterface"]["NetworkInterfaceId"],
                                 InstanceId=iid, DeviceIndex=1)  # fmt: skip
    enis = ec2.describe_network_interfaces(
        Filters=[{"Name": "attachment.instance-id", "Values": [iid]}]
    )["NetworkInterfaces"]
    other = {e["VpcId"]: ec2.create_security_group(GroupName="bare", Description="b",
                                                   VpcId=e["VpcId"])["GroupId"] for e in enis}  # fmt: skip
    spec = QuarantineSpec(aws_security_group="vmw-a1-bench-quarantine")
    ours: list[float] = []
    floor: list[float] = []
    with (
        Store.open(f"sqlite:///{tmp / 'aws-watch.db'}") as store,
        AwsConnector(f"aws://{REGION}") as conn,
    ):
        vm = conn.lookup(iid)  # a sweep has the VM already: not timed
        for _ in range(repeats):  # interleaved: noise hits both sides alike
            t0 = time.perf_counter()
            q = Quarantiner(store, "bench")
            rec = q.quarantine(conn, vm, spec, reason="bench", rule="r")
            back = q.release(conn, iid, reason="bench")
            ours.append(time.perf_counter() - t0)
            if rec.status != "done" or back.status != "done":
                raise RuntimeError(f"quarantine {rec.status}, release {back.status}")
            t0 = time.perf_counter()
            for e in enis:
                ec2.modify_network_interface_attribute(
                    NetworkInterfaceId=e["NetworkInterfaceId"], Groups=[other[e["VpcId"]]]
                )
            for e in enis:
                ec2.modify_network_interface_attribute(
                    NetworkInterfaceId=e["NetworkInterfaceId"],
                    Groups=[g["GroupId"] for g in e["Groups"]],
                )
            floor.append(time.perf_counter() - t0)
    f, o = statistics.median(floor), statistics.median(ours)
    return [
        {"name": "floor: 4 bare modify_network_interface_attribute (2 ENIs, 2 VPCs)",
         "min": min(floor), "median": f, "max": max(floor), "n": len(floor)},
        {"name": "quarantine + release (Quarantiner, 2 ENIs in 2 VPCs)", "min": min(ours),
         "median": o, "max": max(ours), "n": len(ours), "ratio_to_floor": o / f,
         "note": "journal (SQLite), records, group per VPC, one modify per ENI, and back"},
    ]  # fmt: skip


def run(repeats: int = 3, instances: int = 200) -> list[dict[str, Any]]:
    try:
        import boto3
    except ImportError:
        return [{"name": "EC2 watch", "note": "not measured: boto3 is not installed"}]
    if not Path(sys.executable).with_name("moto_server").exists():
        return [{"name": "EC2 watch", "note": "not measured: moto[server] is not installed"}]
    import boto3

    with _moto(), tempfile.TemporaryDirectory(prefix="vmw-a1-bench-") as tmp:
        ec2 = boto3.client("ec2", region_name=REGION)
        sqs = boto3.client("sqs", region_name=REGION)
        events = boto3.client("events", region_name=REGION)
        url = sqs.create_queue(QueueName=QUEUE)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        pattern = {"source": ["aws.ec2"], "detail-type": [CHANGE]}
        events.put_rule(Name="vmw-a1-bench", EventPattern=json.dumps(pattern))
        events.put_targets(Rule="vmw-a1-bench",
                           Targets=[{"Id": "q", "Arn": arn["Attributes"]["QueueArn"]}])  # fmt: skip
        subnets, groups, ids = _estate(ec2, instances)
        pushed, polled = ids[: 4 * repeats], ids[4 * repeats : 5 * repeats]
        push = asyncio.run(_starts(f"aws://{REGION}?sqs={QUEUE}", ec2, events, pushed, "sqs"))
        poll = asyncio.run(_starts(f"aws://{REGION}", ec2, events, polled, "poll"))
        rows = [
            _ms_row(f"start seen, SQS ({instances} instances)", push,
                    "EventBridge put_events -> rule -> SQS; long polls"),
            _ms_row(f"start seen, inventory poll every 5 s ({instances} instances)", poll,
                    "PollFeed: EC2 without a queue"),
        ]  # fmt: skip
        rows += _quarantine(ec2, subnets, groups, 5 * repeats, Path(tmp))
    return rows

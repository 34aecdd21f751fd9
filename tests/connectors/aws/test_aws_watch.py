"""EC2 under ``watch`` against moto's server: polled by default, fed by SQS when the URI names
a queue, and zero exposure through the power-on gate (stopped instances it would deny are
isolated ahead, so they boot isolated).

The SQS test goes the whole EventBridge way in moto: a rule matching EC2 state-change events
with the queue as its target, and ``events.put_events`` of such an event. AWS itself emits
those events and refuses ``put_events`` with an ``aws.*`` source; moto accepts it and routes
it to the queue as EventBridge would deliver a real one, which is what the feed reads.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.connectors.aws.ec2_estate import network, tag_spec
from vmwarden.connectors.aws.watch import STATE_CHANGE, SqsFeed, state_change
from vmwarden.connectors.base import open_event_feed
from vmwarden.engine.watch.hosts import HostWatch
from vmwarden.engine.watch.poll import PollFeed
from vmwarden.errors import ConnectorError
from vmwarden.model.events import VmEvent
from vmwarden.store import Store

QUEUE = "vmw-a1-ec2-events"


def poll(what: Callable[[], Any], timeout: float = 60.0, every: float = 0.1) -> Any:
    """Until ``what()`` is truthy (a bound for a hung daemon, not a latency check)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _instance(ec2: Any, subnet: str, groups: list[str], tags: dict[str, str]) -> str:
    base = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    return str(
        ec2.run_instances(
            ImageId=base,
            MinCount=1,
            MaxCount=1,
            NetworkInterfaces=[{"DeviceIndex": 0, "SubnetId": subnet, "Groups": groups}],
            TagSpecifications=tag_spec("instance", tags),
        )["Instances"][0]["InstanceId"]
    )


def _groups(ec2: Any, iid: str) -> list[str]:
    enis = ec2.describe_network_interfaces(
        Filters=[{"Name": "attachment.instance-id", "Values": [iid]}]
    )["NetworkInterfaces"]
    return [g["GroupName"] for e in enis for g in e["Groups"]]


async def _events_until(
    uri: str, act: Callable[[], None], want: Callable[[VmEvent], bool], poll_every: float = 0.2
) -> tuple[Any, list[VmEvent]]:
    """Open ``uri``'s feed as ``watch`` does, run ``act``, collect events until ``want``."""
    got: list[VmEvent] = []
    host = HostWatch(
        uri,
        on_event=got.append,
        on_up=lambda _h: asyncio.sleep(0),
        on_state=lambda _h: None,
        poll_every=poll_every,
    )
    feed = host.source
    feed.attach(asyncio.get_running_loop())
    await asyncio.to_thread(feed.open)
    try:
        await asyncio.to_thread(act)
        t0 = time.monotonic()
        while not any(want(e) for e in got) and time.monotonic() - t0 < 30:
            await asyncio.sleep(0.05)
        assert feed.alive()
    finally:
        await asyncio.to_thread(feed.close)
    return feed, got


def test_without_a_queue_ec2_is_polled_and_a_start_is_seen(ec2: Any) -> None:
    subnets = network(ec2, "10.5.0.0/16", {"app": "10.5.1.0/24"})
    iid = _instance(ec2, subnets["app"], [], {"Name": "vmw-a1-polled"})
    ec2.stop_instances(InstanceIds=[iid])
    feed, got = asyncio.run(
        _events_until(
            "aws://us-east-1",
            lambda: ec2.start_instances(InstanceIds=[iid]),
            lambda e: e.kind == "started",
        )
    )
    assert isinstance(feed, PollFeed)
    (start,) = [e for e in got if e.kind == "started"]
    assert (start.vm_id, start.name, start.uri) == (iid, "vmw-a1-polled", "aws://us-east-1")


def _queue_fed_by_eventbridge(aws_env: str) -> tuple[Any, str]:
    import boto3

    sqs = boto3.client("sqs", region_name="us-east-1")
    events = boto3.client("events", region_name="us-east-1")
    url = sqs.create_queue(QueueName=QUEUE)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    pattern = {"source": ["aws.ec2"], "detail-type": [STATE_CHANGE]}
    events.put_rule(Name="vmw-a1-ec2-state", EventPattern=json.dumps(pattern))
    events.put_targets(Rule="vmw-a1-ec2-state", Targets=[{"Id": "q", "Arn": arn}])
    return sqs, url


def test_eventbridge_state_changes_reach_watch_through_sqs(aws_env: str, ec2: Any) -> None:
    import boto3

    sqs, url = _queue_fed_by_eventbridge(aws_env)
    events = boto3.client("events", region_name="us-east-1")
    subnets = network(ec2, "10.6.0.0/16", {"app": "10.6.1.0/24"})
    iid = _instance(ec2, subnets["app"], [], {"Name": "vmw-a1-evented"})

    def act() -> None:
        sqs.send_message(QueueUrl=url, MessageBody="not json {")  # the queue is input
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"source": "aws.ec2"}))
        detail = {"instance-id": iid, "state": "running"}
        sent = events.put_events(
            Entries=[
                {"Source": "aws.ec2", "DetailType": STATE_CHANGE, "Detail": json.dumps(detail)}
            ]
        )
        assert sent["FailedEntryCount"] == 0

    feed, got = asyncio.run(
        _events_until(f"aws://us-east-1?sqs={QUEUE}", act, lambda e: e.kind == "started")
    )
    assert isinstance(feed, SqsFeed)  # the URI names a queue: events, not polls
    assert [(e.vm_id, e.name, e.kind, e.detail) for e in got] == [
        (iid, "vmw-a1-evented", "started", "sqs: running")
    ]
    left = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    assert left["Attributes"]["ApproximateNumberOfMessages"] == "0"  # delivered, deleted


def test_a_missing_queue_is_one_clear_error(aws_env: str) -> None:
    feed = open_event_feed(
        "aws://us-east-1?sqs=vmw-a1-nope", on_event=lambda _e: None, on_close=lambda _w: None
    )
    feed.attach(asyncio.new_event_loop())
    with pytest.raises(ConnectorError, match="NonExistentQueue"):
        feed.open()
    with pytest.raises(ConnectorError, match="bad SQS queue"):
        open_event_feed(
            "aws://us-east-1?sqs=https%3A%2F%2Fsqs.example%2Fq",
            on_event=lambda _e: None,
            on_close=lambda _w: None,
        )


def _change(instance: str, state: str, **extra: str) -> str:
    detail = {"instance-id": instance, "state": state}
    return json.dumps({"source": "aws.ec2", "detail-type": STATE_CHANGE, **extra, "detail": detail})


IID = "i-0123456789abcdef0"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (_change(IID, "stopped", region="us-east-1"), (IID, "stopped")),
        (_change(IID, "running"), (IID, "running")),
        (_change(IID, "stopped", region="eu-west-1"), None),  # another region's
        (_change("i-x; rm -rf /", "running"), None),
        (_change(IID, "melted"), None),
        (json.dumps({"source": "aws.ec2", "detail-type": "EBS Snapshot Notification"}), None),
        (json.dumps([1, 2]), None),
        ("", None),
    ],
)
def test_only_ec2_state_changes_of_this_region_are_events(
    body: str, expected: tuple[str, str] | None
) -> None:
    assert state_change(body, "us-east-1") == expected


POLICY = """\
version: 1
quarantine:
  aws: {security_group: vmw-a1-gate-quarantine}
gate:
  deny: [unregistered]
"""


def test_a_stopped_instance_the_gate_denies_is_isolated_ahead_and_boots_isolated(
    aws_env: str, ec2: Any, tmp_path: Path
) -> None:
    subnets = network(ec2, "10.3.0.0/16", {"app": "10.3.1.0/24"})
    vpc = ec2.describe_subnets(SubnetIds=[subnets["app"]])["Subnets"][0]["VpcId"]
    web = ec2.create_security_group(GroupName="vmw-a1-web", Description="w", VpcId=vpc)["GroupId"]
    denied = _instance(ec2, subnets["app"], [web], {"Name": "vmw-a1-denied",
                                                     "vmwarden:registered": "no"})  # fmt: skip
    fine = _instance(ec2, subnets["app"], [web], {"Name": "vmw-a1-fine", "vmwarden:owner": "ops",
                                                   "vmwarden:registered": "yes"})  # fmt: skip
    ec2.stop_instances(InstanceIds=[denied, fine])
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    db = f"sqlite:///{tmp_path / 'watch.db'}"
    log = tmp_path / "watch.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "vmwarden.cli.main", "watch", "-c", "aws://us-east-1",
         "-p", str(policy), "--db", db, "--enforce", "--no-inspect", "-v"],
        stdout=log.open("w"), stderr=subprocess.STDOUT, env=dict(os.environ), cwd=tmp_path,
    )  # fmt: skip
    try:

        def isolated() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"watch exited {proc.returncode}:\n{log.read_text()}")
            return _groups(ec2, denied) == ["vmw-a1-gate-quarantine"]

        poll(isolated, timeout=90)  # isolated while stopped: before anyone starts it
        state = ec2.describe_instances(InstanceIds=[denied])["Reservations"][0]["Instances"][0]
        assert state["State"]["Name"] == "stopped"
        ec2.start_instances(InstanceIds=[denied])
        assert _groups(ec2, denied) == ["vmw-a1-gate-quarantine"]  # it booted isolated
        time.sleep(1.0)  # the poll sees the start; the gate keeps it held (still denied)
        assert _groups(ec2, denied) == ["vmw-a1-gate-quarantine"]
        assert _groups(ec2, fine) == ["vmw-a1-web"]  # registered: left alone
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    with Store.open(db) as store:
        (entry,) = [e for e in store.journal_entries(action="quarantine") if e.id == denied]
    assert entry.actor == "vmwarden-gate" and "isolated ahead of power-on" in (entry.reason or "")
    assert "test-secret-do-not-log" not in log.read_text()

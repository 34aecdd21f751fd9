"""EC2 (#14): inventory against the bare paginated ``describe_instances``, and inspecting the
Debian image from an EBS snapshot with the parallel reader against one block at a time.

moto's server runs in its own process (``moto_server``; its Python work must not share this
process's GIL with the client being measured), reset before the run, driven by real boto3.

- Inventory: ``instances`` instances (5,000 with ``--full``; 2,000 in quick mode: moto takes
  ~1 s per 100 to create them) in 10 subnets of 2 VPCs, tagged, half of them stopped, plus
  unattached volumes and a stale snapshot. ``floor``: ``describe_instances`` paginated to the
  end, nothing else -- what any client pays to list the region. ``vmwarden inventory``:
  ``AwsConnector.inventory()`` (every describe it makes, the mapping to neutral records, the
  pools). Interleaved; ``ratio_to_floor`` on medians (target ≤ 1.5x at ≥ 5,000).
- Snapshot read: the Debian 12 minbase (raw, partitioned, ext4) written into a snapshot block
  by block; one warm inspector worker; each run opens a fresh reader (cold block cache) and
  inspects the snapshot through the served path, as a sweep does. ``parallel`` is
  :class:`~vmwarden.connectors.aws.ebs.SnapshotReader` as shipped; ``one block at a time``
  the same reader with ``parallel=1, readahead=False`` (Trivy's way). ``reads`` is
  ``get_snapshot_block`` requests. Also every listed block read through in 4 MiB reads
  (a whole-disk digest or a large file), both readers. moto on loopback answers a block in
  ~10-25 ms and serves requests one at a time in effect (one Python process), so parallel
  requests gain little here; an inspection of this image needs only ~18 blocks, most of
  them reads that depend on the one before. AWS in a region answers in tens of ms to many
  requests at once, which widens the gap.
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REGION = "us-east-1"
QCOW2 = Path("/var/cache/vmwarden-test/debian-minbase.qcow2")


def _row(name: str, walls: list[float], count: int, **extra: Any) -> dict[str, Any]:
    med = statistics.median(walls)
    return {
        "name": name,
        "min": min(walls),
        "median": med,
        "max": max(walls),
        "n": len(walls),
        "us_per_vm": med / count * 1e6 if count else None,
        **extra,
    }


@contextmanager
def moto() -> Iterator[str]:
    """A moto server in its own process; the environment boto3 reads pointed at it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen(
        [str(exe), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
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
        os.environ.update(
            AWS_ENDPOINT_URL=url,
            AWS_ACCESS_KEY_ID="AKIABENCHBENCHBENCH0",
            AWS_SECRET_ACCESS_KEY="bench-secret",
            AWS_DEFAULT_REGION=REGION,
            AWS_EC2_METADATA_DISABLED="true",
            XDG_STATE_HOME=tempfile.mkdtemp(prefix="vmw-a2-bench-state-"),
        )
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


_ENV = (
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
    "AWS_EC2_METADATA_DISABLED",
    "XDG_STATE_HOME",
)


def build_estate(ec2: Any, instances: int) -> None:
    """``instances`` instances as an account holds them, through real boto3 calls."""
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    subnets = []
    for v in range(2):
        vpc = ec2.create_vpc(CidrBlock=f"10.{v}.0.0/16")["Vpc"]["VpcId"]
        for s in range(5):
            # /20: 4,091 addresses, room for every instance of the estate
            sub = ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.{v}.{s * 16}.0/20")["Subnet"]
            ec2.create_tags(Resources=[sub["SubnetId"]], Tags=[{"Key": "Name", "Value": f"z{s}"}])
            subnets.append(sub["SubnetId"])
    batch = 250
    for start in range(0, instances, batch):
        n = min(batch, instances - start)
        tags = [{"Key": "vmwarden:owner", "Value": f"team{start // batch}"}]
        resp = ec2.run_instances(
            ImageId=image,
            MinCount=n,
            MaxCount=n,
            InstanceType="t3.micro",
            SubnetId=subnets[(start // batch) % len(subnets)],
            TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
        )
        if start // batch % 2:
            ec2.stop_instances(InstanceIds=[i["InstanceId"] for i in resp["Instances"]])
    for _ in range(20):
        ec2.create_volume(AvailabilityZone=f"{REGION}a", Size=4)


def _timed(fn: Callable[[], int], repeats: int) -> tuple[list[float], int]:
    walls: list[float] = []
    count = 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        count = fn()
        walls.append(time.perf_counter() - t0)
    return walls, count


def inventory(instances: int, repeats: int) -> list[dict[str, Any]]:
    import boto3
    from botocore.config import Config

    from vmwarden.connectors.aws.connection import AwsConnector
    from vmwarden.connectors.aws.inventory import PAGE

    SLOW = Config(read_timeout=600)  # building the estate on a loaded machine

    with moto():
        ec2 = boto3.client("ec2", region_name=REGION, config=SLOW)
        t0 = time.perf_counter()
        build_estate(ec2, instances)
        built = time.perf_counter() - t0

        def floor() -> int:
            n = 0
            pages = ec2.get_paginator("describe_instances").paginate(
                PaginationConfig={"PageSize": PAGE}
            )
            for page in pages:
                n += sum(len(r["Instances"]) for r in page["Reservations"])
            return n

        conn = AwsConnector(f"aws://{REGION}")
        try:

            def ours() -> int:
                return len(conn.inventory().vms)

            floor()  # warm both clients' connections
            ours()
            fw: list[float] = []
            ow: list[float] = []
            for _ in range(repeats):
                w, n_floor = _timed(floor, 1)
                fw += w
                w, n_ours = _timed(ours, 1)
                ow += w
        finally:
            conn.close()
    assert n_floor == n_ours == instances, (n_floor, n_ours)
    ratio = statistics.median(ow) / statistics.median(fw)
    where = f"{instances:,} instances"
    note = f"moto in its own process; estate built in {built:.0f} s"
    return [
        _row(f"floor: describe_instances paginated, {where}", fw, instances, note=note),
        _row(
            f"vmwarden inventory, {where}",
            ow,
            instances,
            ratio_to_floor=ratio,
            note=f"{min(ow) / min(fw):.2f}x on mins; every describe, records, pools",
        ),
    ]


def snapshot_read(repeats: int) -> list[dict[str, Any]]:
    import boto3

    from vmwarden.connectors.aws.ebs import open_snapshot
    from vmwarden.inspect.facts import new_fingerprint_key
    from vmwarden.inspect.sandbox import InspectorPool

    if shutil.which("qemu-img") is None or not QCOW2.exists():
        return [{"name": "ebs snapshot read", "note": f"not measured: qemu-img or {QCOW2} missing"}]
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.connectors.aws.snapshot_fixture import raw_disk, write_snapshot

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="vmw-a2-bench-") as tmp, moto():
        disk = raw_disk(QCOW2, Path(tmp) / "debian.raw")
        ec2 = boto3.client("ec2", region_name=REGION)
        ebs = boto3.client("ebs", region_name=REGION)
        sid = write_snapshot(ebs, ec2, disk)
        key = new_fingerprint_key()
        sides = {
            "parallel reader (8 in flight, read-ahead)": {},
            "one block at a time (Trivy's way)": {"parallel": 1, "readahead": False},
        }
        walls: dict[str, list[float]] = {k: [] for k in sides}
        reads: dict[str, int] = {}
        packages: dict[str, int] = {}
        with InspectorPool(workers=1, timeout=300, allowed_dirs=[], fingerprint_key=key) as pool:
            for i in range(repeats + 1):  # the first round warms the worker, not timed
                for name, kwargs in sides.items():
                    t0 = time.perf_counter()
                    reader = open_snapshot(ec2, ebs, sid, REGION, **kwargs)
                    facts = pool.inspect_ranged(sid, [reader], ["raw"], encrypted=False)
                    wall = time.perf_counter() - t0
                    reader.close()
                    if i:
                        walls[name].append(wall)
                    reads[name] = reader.requests
                    packages[name] = len(facts.packages)
        # every listed block read through, in 4 MiB reads (what a whole-disk digest or a
        # large file read does): where bounded parallel fetches and read-ahead pay
        whole: dict[str, list[float]] = {k: [] for k in sides}
        whole_reads: dict[str, int] = {}
        for _ in range(max(1, repeats // 2)):
            for name, kwargs in sides.items():
                reader = open_snapshot(ec2, ebs, sid, REGION, **kwargs)
                t0 = time.perf_counter()
                for offset in range(0, disk.size, 4 * 1024 * 1024):
                    reader.read(offset, 4 * 1024 * 1024)
                whole[name].append(time.perf_counter() - t0)
                whole_reads[name] = reader.requests
                reader.close()
        one_whole = statistics.median(whole["one block at a time (Trivy's way)"])
        for name in sides:
            rows.append(
                _row(
                    f"read whole ebs snapshot, {name}",
                    whole[name],
                    0,
                    ratio_to_floor=statistics.median(whole[name]) / one_whole,
                    reads=whole_reads[name],
                    note=f"{disk.size / 2**30:.1f} GiB image, {len(disk.blocks)} listed blocks",
                )
            )
        single = statistics.median(walls["one block at a time (Trivy's way)"])
        for name in sides:
            rows.append(
                _row(
                    f"inspect ebs snapshot, {name}",
                    walls[name],
                    0,
                    ratio_to_floor=statistics.median(walls[name]) / single,
                    reads=reads[name],
                    packages=packages[name],
                    note=f"{len(disk.blocks)} blocks listed; moto on loopback",
                )
            )
    return rows


def run(full: bool, repeats: int) -> list[dict[str, Any]]:
    return inventory(5000 if full else 2000, repeats) + snapshot_read(repeats)

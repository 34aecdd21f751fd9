"""EBS snapshots read through the EBS direct APIs (moto's server, real boto3, real Debian disk)."""

from __future__ import annotations

import random
from typing import Any

import boto3
import pytest

from tests.connectors.aws.snapshot_fixture import BLOCK, WrittenSnapshot
from vmwarden.connectors.aws.ebs import SnapshotReader, SnapshotReadError, open_snapshot
from vmwarden.connectors.base import DiskUnavailableError
from vmwarden.model.ranged import RangedReader


def _reader(snap: WrittenSnapshot, **kwargs: Any) -> SnapshotReader:
    ec2 = boto3.client("ec2", region_name="us-east-1")
    ebs = boto3.client("ebs", region_name="us-east-1")
    return open_snapshot(ec2, ebs, snap.snapshot_id, "us-east-1", **kwargs)


def test_ranges_of_a_snapshot_read_as_the_disk_holds_them(debian_snapshot: WrittenSnapshot) -> None:
    disk = debian_snapshot.disk
    reader = _reader(debian_snapshot)
    assert isinstance(reader, RangedReader)
    assert reader.size >= disk.size and reader.size % 1024**3 == 0
    ident = reader.identity()
    assert ident["snapshot"] == debian_snapshot.snapshot_id and ident["size"] == reader.size
    rng = random.Random(7)
    with disk.path.open("rb") as f:
        # block edges, a listed block, an unlisted (zero) block, ranges across both
        listed, zero = (
            disk.blocks[3],
            next(i for i in range(disk.size // BLOCK) if i not in disk.blocks),
        )
        offsets = [0, 510, BLOCK - 3, listed * BLOCK + 100, zero * BLOCK - 7]
        offsets += [rng.randrange(0, disk.size - 70000) for _ in range(40)]
        for offset in offsets:
            n = rng.choice([1, 512, 4096, 70000, 2 * BLOCK + 5])
            f.seek(offset)
            assert reader.read(offset, n) == f.read(n), offset
    # past the image file: the volume's zeros up to its size, then nothing
    assert reader.read(reader.size - 10, 100) == bytes(10)
    assert reader.read(reader.size, 10) == b""
    # only listed blocks are requested, each at most once while cached
    assert reader.requests <= len(disk.blocks)
    assert reader.transferred == reader.requests * BLOCK


def test_a_parallel_read_fetches_a_run_of_blocks_at_once(debian_snapshot: WrittenSnapshot) -> None:
    disk = debian_snapshot.disk
    run = next(i for i in disk.blocks if all(i + k in disk.blocks for k in range(6)))
    parallel = _reader(debian_snapshot)
    single = _reader(debian_snapshot, parallel=1, readahead=False)
    with disk.path.open("rb") as f:
        f.seek(run * BLOCK)
        expected = f.read(6 * BLOCK)
    assert parallel.read(run * BLOCK, 6 * BLOCK) == expected
    assert single.read(run * BLOCK, 6 * BLOCK) == expected
    assert single.requests == 6 and parallel.requests >= 6


def test_what_is_not_a_readable_snapshot_says_why(aws_env: str) -> None:
    ec2 = boto3.client("ec2", region_name="us-east-1")
    ebs = boto3.client("ebs", region_name="us-east-1")
    with pytest.raises(DiskUnavailableError, match="not an EBS snapshot id"):
        open_snapshot(ec2, ebs, "snap-../../etc", "us-east-1")
    with pytest.raises(DiskUnavailableError, match="snap-0123456789abcdef0"):
        open_snapshot(ec2, ebs, "snap-0123456789abcdef0", "us-east-1")
    # moto: a snapshot made by ec2.create_snapshot cannot be listed by the direct APIs
    vol = ec2.create_volume(AvailabilityZone="us-east-1a", Size=1)["VolumeId"]
    sid = ec2.create_snapshot(VolumeId=vol)["SnapshotId"]
    with pytest.raises(SnapshotReadError, match=sid):
        open_snapshot(ec2, ebs, sid, "us-east-1")

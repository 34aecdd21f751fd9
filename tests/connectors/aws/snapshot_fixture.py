"""A real Debian disk written into an EBS snapshot block by block (the EBS direct APIs).

moto serves ``list_snapshot_blocks``/``get_snapshot_block`` only for snapshots written with
``start_snapshot``/``put_snapshot_block``/``complete_snapshot`` (one made by
``ec2.create_snapshot`` answers 500), so the image's non-zero 512 KiB blocks are uploaded
that way, as a backup tool would. ``debian_raw`` is the real Debian 12 image
(``/var/cache/vmwarden-test/debian-minbase.qcow2``, built by scripts/build-*.sh) as a raw,
partitioned disk; ``debian_snapshot`` is a completed snapshot of it in the test's clean moto
account (the account is reset before each test, so it is written again: ~1 s).
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

BLOCK = 512 * 1024
DEBIAN_QCOW2 = Path("/var/cache/vmwarden-test/debian-minbase.qcow2")


@dataclass(frozen=True)
class RawDisk:
    """A raw disk image on this machine and the indexes of its non-zero blocks."""

    path: Path
    size: int
    blocks: list[int]


@dataclass(frozen=True)
class WrittenSnapshot:
    snapshot_id: str
    volume_id: str  # the EC2 volume moto records as the snapshot's source
    disk: RawDisk


def raw_disk(qcow2: Path, out: Path) -> RawDisk:
    if shutil.which("qemu-img") is None:
        pytest.skip("qemu-img is not installed (apt-get install qemu-utils)")
    if not qcow2.exists():
        pytest.skip(f"{qcow2} missing: run scripts/build-test-images.sh (make test builds it)")
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(qcow2), str(out)], check=True)
    size = out.stat().st_size
    blocks = []
    with out.open("rb") as f:
        for index in range(-(-size // BLOCK)):
            data = f.read(BLOCK)
            if data.strip(b"\0"):
                blocks.append(index)
    return RawDisk(out, size, blocks)


def write_snapshot(ebs: Any, ec2: Any, disk: RawDisk, tags: dict[str, str] | None = None) -> str:
    """Upload ``disk``'s non-zero blocks into a new completed snapshot; its id."""
    gib = -(-disk.size // 1024**3)
    kwargs: dict[str, Any] = {"VolumeSize": gib, "Description": f"vmwarden test {disk.path.name}"}
    if tags:
        kwargs["Tags"] = [{"Key": k, "Value": v} for k, v in tags.items()]
    sid = str(ebs.start_snapshot(**kwargs)["SnapshotId"])

    def put(index: int) -> None:
        with disk.path.open("rb") as f:
            f.seek(index * BLOCK)
            data = f.read(BLOCK).ljust(BLOCK, b"\0")
        ebs.put_snapshot_block(
            SnapshotId=sid,
            BlockIndex=index,
            BlockData=data,
            DataLength=BLOCK,
            Checksum=base64.b64encode(hashlib.sha256(data).digest()).decode(),
            ChecksumAlgorithm="SHA256",
        )

    with ThreadPoolExecutor(4) as ex:
        list(ex.map(put, disk.blocks))
    ebs.complete_snapshot(SnapshotId=sid, ChangedBlocksCount=len(disk.blocks))
    return sid


@pytest.fixture(scope="session")
def debian_raw(tmp_path_factory: pytest.TempPathFactory) -> RawDisk:
    """The real Debian 12 test image as a raw (partitioned, ext4) disk."""
    return raw_disk(DEBIAN_QCOW2, tmp_path_factory.mktemp("ebs") / "debian-minbase.raw")


@pytest.fixture
def debian_snapshot(aws_env: str, debian_raw: RawDisk) -> WrittenSnapshot:
    """A completed EBS snapshot holding the Debian image, in us-east-1 of the test's account."""
    import boto3

    ebs = boto3.client("ebs", region_name="us-east-1")
    ec2 = boto3.client("ec2", region_name="us-east-1")
    sid = write_snapshot(ebs, ec2, debian_raw)
    snap = ec2.describe_snapshots(SnapshotIds=[sid])["Snapshots"][0]
    return WrittenSnapshot(sid, str(snap["VolumeId"]), debian_raw)

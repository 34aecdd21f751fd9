"""Issue 3's layouts beyond partitions and ext4: the same guest tree on LVM (PV → VG → LV →
ext4) and on XFS gives exactly the facts of the GPT + ext4 disk; a VG spanning two disks
(each inspected alone) is uninspectable with the reason, in process and in the sandbox."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.inspect.conftest import KEY, GuestImages
from tests.inspect.layouts import LayoutImages
from vmwarden.errors import InspectError
from vmwarden.inspect.disk import open_guest
from vmwarden.inspect.facts import inspect_image
from vmwarden.inspect.sandbox import InspectorPool
from vmwarden.model import GuestFacts


def _comparable(facts: GuestFacts) -> dict[str, Any]:
    data = facts.to_dict()
    for key in ("image", "inspected_at", "seconds", "identity", "filesystems"):
        data.pop(key, None)
    return data


@pytest.fixture(scope="module")
def reference(guest_images: GuestImages) -> dict[str, Any]:
    """The facts of the GPT + ext4 disk of the same tree, which every layout must match."""
    facts = inspect_image(guest_images.qcow2, allowed_dirs=[guest_images.root], fingerprint_key=KEY)
    assert facts.errors == [] and facts.os_name == "debian"
    return _comparable(facts)


@pytest.mark.parametrize(("layout", "filesystem"), [("lvm", "ext"), ("xfs", "xfs")])
def test_layout_gives_the_same_facts_in_process_and_sandboxed(
    layout_images: LayoutImages, reference: dict[str, Any], layout: str, filesystem: str
) -> None:
    path: Path = getattr(layout_images, layout)
    dirs = [layout_images.root]
    local = inspect_image(path, allowed_dirs=dirs, fingerprint_key=KEY)
    with InspectorPool(workers=1, allowed_dirs=dirs, fingerprint_key=KEY) as pool:
        sandboxed = pool.inspect(path)
        stats = pool.stats[str(path)]
    for facts in (local, sandboxed):
        assert facts.filesystems == [filesystem]
        assert facts.errors == []
        assert _comparable(facts) == reference
    assert (local.os_name, local.os_version) == ("debian", "12")
    assert {p.name for p in local.packages or []} >= {"openssh-server", "chrony", "libssl3"}
    assert {u.name for u in local.users or []} >= {"root", "alice", "bob"}
    assert 0 < stats["bytes_read"] < stats["image_bytes"]


def test_lvm_root_is_read_through_the_volume_group(layout_images: LayoutImages) -> None:
    """Not an ext4 found by luck at some offset: dissect assembled the VG's logical volume."""
    fd = os.open(layout_images.lvm, os.O_RDONLY)
    try:
        guest = open_guest([(fd, "qcow2")], name=str(layout_images.lvm))
        assert guest.target is not None
        lvm = [v for v in guest.target.volumes if getattr(v.vs, "__type__", None) == "lvm"]
        assert [v.name for v in lvm] == [f"{layout_images.vg}-root"]
        (root,) = [fs for fs in guest.target.filesystems if fs.__type__ == "ext"]
        assert root.volume.name == f"{layout_images.vg}-root"
    finally:
        os.close(fd)


def test_vg_spanning_two_disks_is_uninspectable_with_the_reason(
    layout_images: LayoutImages,
) -> None:
    """vmwarden inspects one disk at a time; dissect needs every PV of a VG to open it."""
    dirs = [layout_images.root]
    with InspectorPool(workers=1, allowed_dirs=dirs, fingerprint_key=KEY) as pool:
        for disk in layout_images.split:
            with pytest.raises(InspectError, match="Physical volume not found") as local:
                inspect_image(disk, allowed_dirs=dirs, fingerprint_key=KEY)
            with pytest.raises(InspectError, match="Physical volume not found") as remote:
                pool.inspect(disk)
            for message in (str(local.value), str(remote.value)):
                assert "cannot read disk: LVM2Error" in message
                assert message.endswith("spans other disks; each disk is inspected alone)")

"""Images (upsert by host+path) and scan bookkeeping."""

from __future__ import annotations

from datetime import timedelta

from tests.store.store_builders import T0
from vmwarden.model import Image
from vmwarden.store import Store


def test_images_upsert_keeps_first_seen(store: Store) -> None:
    img = Image(
        path="/var/lib/libvirt/images/a.qcow2",
        host="kvm1",
        format="qcow2",
        size=10,
        mtime=T0,
        attached_to=["u1"],
    )
    assert store.record_images([img], now=T0) == 1
    img.attached_to = []
    img.digest = "sha256:" + "aa" * 32
    store.record_images([img, Image(path="/x.raw", host="kvm2")], now=T0 + timedelta(hours=1))
    stored = {i["path"]: i for i in store.list_images()}
    a = stored["/var/lib/libvirt/images/a.qcow2"]
    assert a["first_seen"] == T0 and a["last_seen"] == T0 + timedelta(hours=1)
    assert a["attached_to"] == [] and a["digest"] == "sha256:" + "aa" * 32
    assert a["mtime"] == T0.isoformat()  # Image.to_dict() form
    assert [i["path"] for i in store.list_images(host="kvm2")] == ["/x.raw"]


def test_scans(store: Store) -> None:
    first = store.begin_scan(["test:///a.xml"])
    store.finish_scan(first, {"vms": 3, "findings": 1})
    second = store.begin_scan(["test:///a.xml", "test:///b.xml"])
    scans = store.recent_scans()
    assert [s["id"] for s in scans] == [second, first]
    assert scans[0]["finished_at"] is None and scans[0]["uris"] == [
        "test:///a.xml",
        "test:///b.xml",
    ]
    assert scans[1]["counts"] == {"vms": 3, "findings": 1}
    assert scans[1]["finished_at"] >= scans[1]["started_at"]

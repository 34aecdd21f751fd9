"""Images (upsert by host+path, quiet re-scan, gone) and scan bookkeeping."""

from __future__ import annotations

from datetime import timedelta

from tests.store.store_builders import T0
from vmwarden.model import Image
from vmwarden.model.guest import GuestFacts, Package
from vmwarden.store import Store
from vmwarden.store.records import record_of

T1, T2 = T0 + timedelta(hours=1), T0 + timedelta(hours=2)
A = "/var/lib/libvirt/images/a.qcow2"


def _img(path: str = A, host: str = "kvm1", **kw: object) -> Image:
    return Image(path=path, host=host, format="qcow2", size=10, mtime=T0, **kw)


def test_images_upsert_keeps_first_seen(store: Store) -> None:
    delta = store.record_images([_img(attached_to=["u1"])], now=T0)
    assert delta.new == [("kvm1", A)] and len(delta) == 1
    changed = _img(attached_to=[], digest="sha256:" + "aa" * 32)
    delta = store.record_images([changed, Image(path="/x.raw", host="kvm2")], now=T1)
    assert delta.changed == [("kvm1", A)] and delta.new == [("kvm2", "/x.raw")]
    stored = {i["path"]: i for i in store.list_images()}
    a = stored[A]
    assert a["first_seen"] == T0 and a["last_seen"] == T1
    assert a["attached_to"] == [] and a["digest"] == "sha256:" + "aa" * 32
    assert a["mtime"] == T0.isoformat()  # Image.to_dict() form
    assert [i["path"] for i in store.list_images(host="kvm2")] == ["/x.raw"]


def test_image_record_keeps_everything(store: Store) -> None:
    facts = GuestFacts(image=A, os_name="debian", packages=[Package("telnetd", "0.17")])
    img = _img(kind="orphaned", mode=0o100644, guest=facts)
    store.record_images([img], now=T0)
    (stored,) = store.list_images()
    assert {k: stored[k] for k in img.to_dict()} == img.to_dict()
    assert record_of(img) == img.to_dict()


def test_unchanged_images_on_complete_hosts_are_not_rewritten(store: Store) -> None:
    store.record_images([_img(), _img("/b.qcow2")], now=T0, complete_hosts={"kvm1"})
    delta = store.record_images([_img(), _img("/b.qcow2")], now=T1, complete_hosts={"kvm1"})
    assert len(delta.unchanged) == 2 and not delta.changed and not delta.new
    assert {i["last_seen"] for i in store.list_images()} == {T1}  # from the host's listing
    # Incomplete listing: last_seen is written per image instead.
    store.record_images([_img()], now=T2)
    assert {i["path"]: i["last_seen"] for i in store.list_images()} == {A: T2, "/b.qcow2": T1}


def test_images_gone_only_from_complete_hosts(store: Store) -> None:
    store.record_images(
        [_img(), _img("/c.raw", host="kvm2")], now=T0, complete_hosts={"kvm1", "kvm2"}
    )
    delta = store.record_images([], now=T1, complete_hosts={"kvm1"})
    assert delta.gone == [("kvm1", A)]
    assert [i["path"] for i in store.list_images()] == ["/c.raw"]
    (gone,) = store.list_images(host="kvm1", include_gone=True)
    assert gone["gone_at"] == T1 and gone["last_seen"] == T0
    back = store.record_images([_img()], now=T2, complete_hosts={"kvm1"})
    assert back.changed == [("kvm1", A)]
    assert store.list_images(host="kvm1")[0]["gone_at"] is None


def test_scans(store: Store) -> None:
    first = store.begin_scan(["test:///a.xml"])
    store.finish_scan(first, {"vms": 3, "findings": 1})
    second = store.begin_scan(["test:///a.xml", "test:///b.xml"])
    scans = store.recent_scans()
    assert [s["id"] for s in scans] == [second, first]
    assert scans[0]["finished_at"] is None
    assert scans[0]["uris"] == ["test:///a.xml", "test:///b.xml"]
    assert scans[1]["counts"] == {"vms": 3, "findings": 1}
    assert scans[1]["finished_at"] >= scans[1]["started_at"]

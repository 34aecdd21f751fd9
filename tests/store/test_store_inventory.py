"""record_inventory: upserts, forensics history, gone detection, state_since, lookups."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.store.store_builders import T0, make_vm
from vmwarden.errors import StoreError
from vmwarden.model import VM, Layer, Nic, State
from vmwarden.store import Store
from vmwarden.store.records import record_of

T1, T2, T3 = (T0 + timedelta(hours=h) for h in (1, 2, 3))


def _fields(store: Store, vm_id: str) -> list[tuple[str, str | None, str | None]]:
    return [(h.field, h.old, h.new) for h in store.vm_history(vm_id)]


def test_first_sighting_records_initial_values(store: Store) -> None:
    vm = make_vm(1, networks=("prod", "backup"))
    delta = store.record_inventory([vm], now=T0, complete_hosts={"kvm1"})
    assert delta.new == [vm.id] and not delta.changed and not delta.gone
    mac0, mac1 = (nic.mac for nic in vm.nics)
    assert sorted(_fields(store, vm.id)) == sorted(
        [
            ("host", None, "kvm1"),
            ("state", None, "running"),
            ("name", None, "vm00001"),
            ("mac", None, mac0),
            ("mac", None, mac1),
            ("network", None, f"{mac0}=prod"),
            ("network", None, f"{mac1}=backup"),
        ]
    )
    for entry in store.vm_history(vm.id):
        assert entry.at == T0 and entry.at.tzinfo is not None
        assert entry.at.utcoffset() == timedelta(0)
        assert entry.source == "scan"
    assert vm.first_seen == T0
    assert vm.state_since is None


def test_stored_record_is_the_vm_dict(store: Store) -> None:
    vm = make_vm(2)
    store.record_inventory([vm], now=T0, complete_hosts={"kvm1"})
    stored = store.get_vm(vm.id)
    assert stored is not None
    expected = vm.to_dict()
    for key in ("first_seen", "state_since"):  # overlaid with the store's datetimes
        expected.pop(key)
        stored.pop(key)
    assert stored.pop("last_seen") == T0
    assert stored.pop("gone_at") is None
    assert stored == expected


def test_rescan_keeps_first_seen_and_moves_last_seen(store: Store) -> None:
    store.record_inventory([make_vm(1)], now=T0, complete_hosts={"kvm1"})
    again = make_vm(1)
    delta = store.record_inventory([again], now=T1, complete_hosts={"kvm1"})
    assert delta.unchanged == [again.id] and delta.vm_rows == 0 and delta.history_rows == 0
    assert again.first_seen == T0
    stored = store.get_vm(again.id)
    assert stored["first_seen"] == T0
    assert stored["last_seen"] == T1


def test_last_seen_on_incomplete_host_is_written_per_vm(store: Store) -> None:
    store.record_inventory([make_vm(1)], now=T0, complete_hosts=set())
    delta = store.record_inventory([make_vm(1)], now=T1, complete_hosts=set())
    assert delta.vm_rows == 1 and delta.history_rows == 0
    assert store.get_vm(make_vm(1).id)["last_seen"] == T1


def test_state_change_is_witnessed(store: Store) -> None:
    vm = make_vm(1)
    store.record_inventory([vm], now=T0, complete_hosts={"kvm1"})
    off = make_vm(1, state=State.SHUTOFF)
    delta = store.record_inventory([off], now=T1, complete_hosts={"kvm1"})
    assert delta.changed == [vm.id]
    assert _fields(store, vm.id)[-1] == ("state", "running", "shutoff")
    assert off.state_since == T1
    still = make_vm(1, state=State.SHUTOFF)
    store.record_inventory([still], now=T2, complete_hosts={"kvm1"})
    assert still.state_since == T1
    assert store.get_vm(vm.id)["state_since"] == T1


def test_first_seen_shut_off_has_no_state_since(store: Store) -> None:
    """Dormancy of a VM never seen running falls back to its disks' mtime (engine)."""
    for now in (T0, T1, T2):
        vm = make_vm(1, state=State.SHUTOFF)
        store.record_inventory([vm], now=now, complete_hosts={"kvm1"})
        assert vm.state_since is None
        assert vm.first_seen == T0
    assert store.get_vm(vm.id)["state_since"] is None


def test_mac_and_network_changes(store: Store) -> None:
    vm = make_vm(1, networks=("prod",))
    store.record_inventory([vm], now=T0, complete_hosts={"kvm1"})
    mac = vm.nics[0].mac
    moved = make_vm(1, networks=("dmz",))
    store.record_inventory([moved], now=T1, complete_hosts={"kvm1"})
    assert _fields(store, vm.id)[-1] == ("network", f"{mac}=prod", f"{mac}=dmz")

    swapped = make_vm(1, networks=("dmz",))
    swapped.nics[0].mac = "52:54:00:AA:BB:CC"  # stored lower-case
    store.record_inventory([swapped], now=T2, complete_hosts={"kvm1"})
    changes = [(h.field, h.old, h.new) for h in store.vm_history(vm.id) if h.at == T2]
    assert set(changes) == {
        ("mac", mac, None),
        ("network", f"{mac}=dmz", None),
        ("mac", None, "52:54:00:aa:bb:cc"),
        ("network", None, "52:54:00:aa:bb:cc=dmz"),
    }


def test_bridge_and_direct_nics_are_labelled(store: Store) -> None:
    vm = make_vm(1, networks=())
    vm.nics = [
        Nic(mac="52:54:00:00:00:01", type="bridge", bridge="br0"),
        Nic(mac="52:54:00:00:00:02", type="direct", source_dev="eth1"),
        Nic(mac=None, type="user"),  # no MAC: nothing to track
    ]
    store.record_inventory([vm], now=T0, complete_hosts={"kvm1"})
    nets = {h.new for h in store.vm_history(vm.id) if h.field == "network"}
    assert nets == {"52:54:00:00:00:01=bridge:br0", "52:54:00:00:00:02=direct:eth1"}


def test_host_change_is_history_not_gone(store: Store) -> None:
    vm = make_vm(1, host="kvm1")
    store.record_inventory([vm], now=T0, complete_hosts={"kvm1", "kvm2"})
    moved = make_vm(1, host="kvm2")
    delta = store.record_inventory([moved], now=T1, complete_hosts={"kvm1", "kvm2"})
    assert delta.changed == [vm.id] and delta.gone == []
    assert ("host", "kvm1", "kvm2") in _fields(store, vm.id)
    assert store.get_vm(vm.id)["host"] == "kvm2"
    assert store.get_vm(vm.id)["gone_at"] is None


def test_gone_only_for_complete_hosts(store: Store) -> None:
    a, b = make_vm(1, host="kvm1"), make_vm(2, host="kvm2")
    store.record_inventory([a, b], now=T0, complete_hosts={"kvm1", "kvm2"})
    # kvm2 could not be listed completely this time: b is not judged gone.
    delta = store.record_inventory([], now=T1, complete_hosts={"kvm1"})
    assert delta.gone == [a.id]
    gone = store.get_vm(a.id)
    assert gone["gone_at"] == T1
    assert gone["last_seen"] == T0  # the last time it was actually there
    assert _fields(store, a.id)[-1] == ("state", "running", "gone")
    assert store.get_vm(b.id)["gone_at"] is None
    assert store.get_vm(b.id)["last_seen"] == T0
    # Already gone: not gone again.
    assert store.record_inventory([], now=T2, complete_hosts={"kvm1"}).gone == []
    assert [v["id"] for v in store.list_vms()] == [b.id]
    assert [v["id"] for v in store.list_vms(state="gone")] == [a.id]
    assert len(store.list_vms(include_gone=True)) == 2


def test_gone_vm_comes_back(store: Store) -> None:
    vm = make_vm(1, state=State.SHUTOFF)
    store.record_inventory([vm], now=T0, complete_hosts={"kvm1"})
    store.record_inventory([], now=T1, complete_hosts={"kvm1"})
    back = make_vm(1, state=State.SHUTOFF)
    delta = store.record_inventory([back], now=T2, complete_hosts={"kvm1"})
    assert delta.changed == [vm.id]
    assert _fields(store, vm.id)[-1] == ("state", "gone", "shutoff")
    assert store.get_vm(vm.id)["gone_at"] is None
    assert back.state_since is None  # same state it left in: dormancy clock not reset
    running = make_vm(1, state=State.RUNNING)
    store.record_inventory([], now=T2 + timedelta(minutes=1), complete_hosts={"kvm1"})
    store.record_inventory([running], now=T3, complete_hosts={"kvm1"})
    assert running.state_since == T3


def test_rename_and_name_lookup(store: Store) -> None:
    vm = make_vm(1, name="web01")
    store.record_inventory([vm], now=T0, complete_hosts={"kvm1"})
    store.record_inventory([make_vm(1, name="web02")], now=T1, complete_hosts={"kvm1"})
    assert ("name", "web01", "web02") in _fields(store, vm.id)
    assert store.get_vm("web02")["id"] == vm.id
    assert store.vm_history("web01")[0].vm_id == vm.id  # a former name still finds it
    assert store.get_vm(vm.id.upper())["id"] == vm.id
    assert store.get_vm("nope") is None
    assert store.vm_history("nope") == []


def test_ambiguous_name_lists_candidates(store: Store) -> None:
    a, b = make_vm(1, name="db", host="kvm1"), make_vm(2, name="db", host="kvm2")
    store.record_inventory([a, b], now=T0, complete_hosts={"kvm1", "kvm2"})
    with pytest.raises(StoreError, match="ambiguous") as caught:
        store.get_vm("db")
    assert a.id in str(caught.value) and b.id in str(caught.value)
    assert "kvm2" in str(caught.value)
    assert caught.value.hint


def test_list_vms_filters(store: Store) -> None:
    vms = [
        make_vm(1, host="kvm1"),
        make_vm(2, host="kvm2"),
        make_vm(3, host="kvm2", state=State.SHUTOFF),
    ]
    store.record_inventory(vms, now=T0, complete_hosts={"kvm1", "kvm2"})
    assert [v["name"] for v in store.list_vms(host="kvm2")] == ["vm00002", "vm00003"]
    assert [v["name"] for v in store.list_vms(state="shutoff")] == ["vm00003"]
    assert [v["name"] for v in store.list_vms(host="kvm2", state=State.RUNNING)] == ["vm00002"]


def test_duplicate_ids_in_one_sweep_keep_the_first(store: Store) -> None:
    a, twin = make_vm(1, host="kvm1"), make_vm(1, host="kvm2")
    delta = store.record_inventory([a, twin], now=T0, complete_hosts={"kvm1", "kvm2"})
    assert delta.new == [a.id] and delta.duplicates == [a.id]
    assert twin.first_seen == T0
    assert store.get_vm(a.id)["host"] == "kvm1"


def test_naive_now_is_refused(store: Store) -> None:
    with pytest.raises(StoreError, match="naive"):
        store.record_inventory([make_vm(1)], now=datetime(2025, 1, 1), complete_hosts=set())


def test_non_utc_now_is_stored_as_utc(store: Store) -> None:
    plus2 = T0.astimezone(__import__("zoneinfo").ZoneInfo("Europe/Berlin"))
    vm = make_vm(1)
    store.record_inventory([vm], now=plus2, complete_hosts={"kvm1"})
    assert vm.first_seen == T0 and vm.first_seen.tzinfo is UTC
    again = make_vm(1)
    assert store.record_inventory([again], now=T1, complete_hosts={"kvm1"}).unchanged


def test_engine_filled_fields_are_a_change_without_history(store: Store) -> None:
    store.record_inventory([make_vm(1)], now=T0, complete_hosts={"kvm1"})
    vm = make_vm(1)
    vm.disks[0].chain[0].digest = "sha256:" + "cd" * 32
    delta = store.record_inventory([vm], now=T1, complete_hosts={"kvm1"})
    assert delta.changed == [vm.id] and delta.history_rows == 0
    assert store.get_vm(vm.id)["disks"][0]["chain"][0]["digest"] == "sha256:" + "cd" * 32


def test_record_of_equals_to_dict() -> None:
    plain = VM(id="u", name="n", host="h", uri="test:///default", state=State.PAUSED)
    rich = make_vm(7, networks=("a", "b"))
    rich.meta.tags = {"quarantined": "yes"}
    rich.guest = {"os": {"name": "debian"}, "seen": T0, "pkgs": [("a", 1)], "ok": None}
    rich.disks[0].chain.append(Layer(path=None, type="network", error="unreadable"))
    rich.first_seen, rich.state_since = T0, T1
    for vm in (plain, rich):
        assert record_of(vm) == vm.to_dict()


@pytest.mark.slow
def test_ten_thousand_vms_bulk_and_quiet_rescan(store: Store) -> None:
    hosts = {f"kvm{h}" for h in range(20)}
    first = [make_vm(i, host=f"kvm{i % 20}") for i in range(10_000)]
    delta = store.record_inventory(first, now=T0, complete_hosts=hosts)
    assert len(delta.new) == 10_000
    assert delta.history_rows == 10_000 * 5  # host, state, name, mac, network
    second = [make_vm(i, host=f"kvm{i % 20}") for i in range(10_000)]
    delta = store.record_inventory(second, now=T1, complete_hosts=hosts)
    assert len(delta.unchanged) == 10_000
    assert delta.history_rows == 0 and delta.vm_rows == 0 and delta.changed == []
    assert len(store.vm_history(first[0].id)) == 5
    assert store.get_vm(first[-1].id)["last_seen"] == T1
    assert all(vm.first_seen == T0 for vm in second)

"""The VM input digest (revision 0006): kept with the record, cleared by writers without one.

A scan rebuilds a VM from the stored record when libvirt's input digest matches the stored
one, so the digest must always name the input the stored record was made from.
"""

from __future__ import annotations

import json
from pathlib import Path

from alembic import command
from sqlalchemy import text

from tests.store.store_builders import T0, make_vm
from tests.store.test_store_migrations import _at_revision
from vmwarden.store import Store, db

CHAINS = [[["/var/lib/libvirt/images/vm1.qcow2", "qcow2", "file"]]]


def test_upgrade_from_0005_keeps_vms_without_a_digest(db_path: Path) -> None:
    url = f"sqlite:///{db_path}"
    _at_revision(url, "0005")
    vm = make_vm(1)
    engine = db.connect(url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO vms (id, name, host, uri, state, persistent, record, record_digest,"
                " first_seen, last_seen) VALUES (:id, 'vm00001', 'kvm1', 'qemu:///system',"
                " 'running', 1, :record, 'old', '2025-03-01 12:00:00', '2025-03-01 12:00:00')"
            ),
            {"id": vm.id, "record": json.dumps(vm.to_dict())},
        )
    engine.dispose()
    with Store.open(url) as store:
        assert db.current_revision(store._engine) == db.head_revision() >= "0006"
        assert store.get_vm(vm.id)["first_seen"] == T0  # the row survived
        assert store.known_inputs() == {}  # no digest yet: the next scan parses it
        delta = store.record_inventory(
            [vm], now=T0, complete_hosts={"kvm1"}, inputs={vm.id: ("d1", CHAINS)}
        )
        assert delta.changed == [vm.id]
        digest, record, chains = store.known_inputs()[vm.id]
        assert (digest, chains) == ("d1", CHAINS)
        assert record["name"] == vm.name
    engine = db.connect(url)
    cfg = db.alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0005")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT id FROM vms")).all() == [(vm.id,)]
    engine.dispose()


def test_a_new_digest_rewrites_an_unchanged_record(db_path: Path) -> None:
    with Store.open(f"sqlite:///{db_path}") as store:
        vm = make_vm(1)
        store.record_inventory([vm], now=T0, complete_hosts={"kvm1"}, inputs={vm.id: ("d1", [])})
        same = store.record_inventory(
            [make_vm(1)], now=T0, complete_hosts={"kvm1"}, inputs={vm.id: ("d1", [])}
        )
        assert same.unchanged == [vm.id] and same.vm_rows == 0
        other = store.record_inventory(
            [make_vm(1)], now=T0, complete_hosts={"kvm1"}, inputs={vm.id: ("d2", CHAINS)}
        )
        assert other.changed == [vm.id] and other.history_rows == 0
        assert store.known_inputs()[vm.id][0] == "d2"


def test_a_change_recorded_without_a_digest_clears_it(db_path: Path) -> None:
    with Store.open(f"sqlite:///{db_path}") as store:
        vm = make_vm(1)
        store.record_inventory([vm], now=T0, complete_hosts={"kvm1"}, inputs={vm.id: ("d1", [])})
        unchanged = store.record_inventory([make_vm(1)], now=T0, complete_hosts={"kvm1"})
        assert unchanged.unchanged == [vm.id]
        assert store.known_inputs()[vm.id][0] == "d1"  # same record: the digest still holds
        changed = make_vm(1)
        changed.vcpus = 8
        store.record_inventory([changed], now=T0, complete_hosts={"kvm1"}, source="watch")
        assert vm.id not in store.known_inputs()


def test_gone_vms_are_not_known(db_path: Path) -> None:
    with Store.open(f"sqlite:///{db_path}") as store:
        vm = make_vm(1)
        store.record_inventory([vm], now=T0, complete_hosts={"kvm1"}, inputs={vm.id: ("d1", [])})
        store.record_inventory([], now=T0, complete_hosts={"kvm1"})
        assert store.known_inputs() == {}

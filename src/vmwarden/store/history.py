"""Forensics: every witnessed change of a VM's host, state, name, MACs and networks."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select

from vmwarden.errors import StoreError
from vmwarden.store.base import StoreBase
from vmwarden.store.tables import vm_history, vms

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from vmwarden.model import VM

FIELDS = ("host", "state", "mac", "network", "name")
#: What the platform said a VM was made from (a clone's or a deployment's source template).
MADE_FROM = "made_from"
GONE = "gone"  # the state history records when a VM vanished from a fully listed host


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One change. ``old`` is None on first sighting; ``network`` values are ``mac=network``."""

    vm_id: str
    at: datetime
    field: str
    old: str | None
    new: str | None
    source: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "vm_id": self.vm_id,
            "at": self.at.isoformat(),
            "field": self.field,
            "old": self.old,
            "new": self.new,
            "source": self.source,
        }


@dataclass(frozen=True, slots=True)
class Sighting:
    """What history tracks of one VM at one moment. ``nics`` maps MAC → network label."""

    name: str | None
    host: str | None
    state: str | None
    nics: dict[str, str | None]


NOTHING = Sighting(None, None, None, {})  # what there was before the first sighting


def network_label(
    network: str | None, bridge: str | None, source_dev: str | None, nic_type: str | None
) -> str | None:
    """The network a NIC is plugged into, as an operator names it."""
    if network:
        return network
    if bridge:
        return f"bridge:{bridge}"
    if source_dev:
        return f"{nic_type or 'direct'}:{source_dev}"
    return None


def sighting_of_vm(vm: VM) -> Sighting:
    nics = {
        nic.mac.lower(): network_label(nic.network, nic.bridge, nic.source_dev, nic.type)
        for nic in vm.nics
        if nic.mac
    }
    return Sighting(vm.name, vm.host, str(vm.state), nics)


def sighting_of_record(record: dict[str, Any], *, state: str | None = None) -> Sighting:
    nics = {
        str(nic["mac"]).lower(): network_label(
            nic.get("network"), nic.get("bridge"), nic.get("source_dev"), nic.get("type")
        )
        for nic in record.get("nics") or []
        if nic.get("mac")
    }
    return Sighting(record["name"], record["host"], state or record["state"], nics)


def _pair(mac: str, label: str | None) -> str | None:
    return f"{mac}={label}" if label else None


def diff(old: Sighting | None, new: Sighting) -> list[tuple[str, str | None, str | None]]:
    """(field, old, new) for every change; against ``None`` (first sighting) every value."""
    before = old or NOTHING
    out: list[tuple[str, str | None, str | None]] = [
        (name, getattr(before, name), getattr(new, name))
        for name in ("host", "state", "name")
        if getattr(before, name) != getattr(new, name)
    ]
    for mac in sorted(before.nics.keys() - new.nics.keys()):
        out.append(("mac", mac, None))
        if before.nics[mac]:
            out.append(("network", _pair(mac, before.nics[mac]), None))
    for mac in sorted(new.nics.keys() - before.nics.keys()):
        out.append(("mac", None, mac))
        if new.nics[mac]:
            out.append(("network", None, _pair(mac, new.nics[mac])))
    for mac in sorted(new.nics.keys() & before.nics.keys()):
        if before.nics[mac] != new.nics[mac]:
            out.append(("network", _pair(mac, before.nics[mac]), _pair(mac, new.nics[mac])))
    return out


def history_rows(
    vm_id: str, changes: Iterable[tuple[str, str | None, str | None]], at: datetime, source: str
) -> list[dict[str, Any]]:
    return [
        {"vm_id": vm_id, "at": at, "field": f, "old": o, "new": n, "source": source}
        for f, o, n in changes
    ]


def resolve_vm_id(conn: Connection, key: str) -> str | None:
    """A VM id from an id or a name (current, else former); ambiguity is an error."""
    for candidate in dict.fromkeys((key, key.lower())):
        if conn.execute(select(vms.c.id).where(vms.c.id == candidate)).first():
            return candidate
    rows = conn.execute(
        select(vms.c.id, vms.c.host, vms.c.gone_at).where(vms.c.name == key).order_by(vms.c.id)
    ).all()
    if len(rows) == 1:
        return rows[0].id
    if len(rows) > 1:
        listed = ", ".join(f"{r.id} on {r.host}{' (gone)' if r.gone_at else ''}" for r in rows)
        raise StoreError(
            f"VM name {key!r} is ambiguous: {listed}", hint="name the VM by its UUID instead"
        )
    former = conn.execute(
        select(vm_history.c.vm_id)
        .where(vm_history.c.field == "name", vm_history.c.new == key)
        .distinct()
        .order_by(vm_history.c.vm_id)
    ).all()
    if len(former) == 1:
        return former[0].vm_id
    if len(former) > 1:
        listed = ", ".join(r.vm_id for r in former)
        raise StoreError(
            f"VM name {key!r} was used by several VMs: {listed}",
            hint="name the VM by its UUID instead",
        )
    return None


class HistoryRepo(StoreBase):
    def record_made_from(self, vm_id: str, source_vm: str, *, at: datetime, source: str) -> None:
        """Provenance the platform reported (an event naming a clone's or a deployment's
        source), kept as a ``made_from`` history entry: the disks' lineage is judged on its
        own, this is what vCenter said, for forensics."""
        rows = history_rows(vm_id, [(MADE_FROM, None, source_vm[:1024])], at, source)
        with self._write() as conn:
            conn.execute(insert(vm_history), rows)

    def vm_history(self, vm_id_or_name: str) -> list[HistoryEntry]:
        """The VM's changes, oldest first; empty when the VM was never seen."""
        with self._read() as conn:
            vm_id = resolve_vm_id(conn, vm_id_or_name)
            if vm_id is None:
                return []
            rows = conn.execute(
                select(vm_history)
                .where(vm_history.c.vm_id == vm_id)
                .order_by(vm_history.c.at, vm_history.c.id)
            ).all()
        return [HistoryEntry(r.vm_id, r.at, r.field, r.old, r.new, r.source) for r in rows]

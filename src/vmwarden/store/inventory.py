"""The VM inventory: bulk recording of a sweep, gone detection, lookups.

A sweep of 50,000 VMs is recorded with a handful of statements: one chunked read of what is
stored, one chunked executemany upsert of the new and changed VMs, one executemany of history
rows. A VM whose fingerprint (and, from a scan, input digest) matches the stored one is not
written at all; its ``last_seen`` comes from its host's listing time (see ``listings``).

``known_inputs`` gives the next scan what it needs to skip parsing unchanged domains: each
VM's input digest, its stored record and the chains its XML gave (one SELECT).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select, text, update

from vmwarden.store.base import StoreBase, aware, chunks, execute_rows, upsert
from vmwarden.store.history import (
    GONE,
    diff,
    history_rows,
    resolve_vm_id,
    sighting_of_record,
    sighting_of_vm,
)
from vmwarden.store.listings import VMS, bump, listing_join, mark_gone, seen
from vmwarden.store.records import fingerprint, record_of
from vmwarden.store.tables import vm_history, vms

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Row

    from vmwarden.model import VM

# Columns rewritten when a known VM changed (first_seen is kept forever).
FULL_SCAN = 10_000  # a sweep this big reads the stored rows in one pass
ANALYZE_AFTER = 5_000  # rows written in one sweep that call for fresh planner statistics
_UPDATED = (
    "name",
    "host",
    "uri",
    "state",
    "persistent",
    "vcpus",
    "memory_kib",
    "owner",
    "classification",
    "template",
    "registered",
    "record",
    "record_digest",
    "last_seen",
    "state_since",
    "gone_at",
    "input_digest",
    "input_chains",
)
# What a scan knows of one VM's libvirt input: (digest, the disks' chains before lineage).
Input = tuple[str, list[Any]]


@dataclass(slots=True)
class InventoryDelta:
    """VM ids by what the sweep did to them. ``duplicates``: ids listed twice (first kept)."""

    new: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    history_rows: int = 0  # forensics rows written
    vm_rows: int = 0  # vms rows inserted or updated (unchanged VMs on complete hosts: none)


def _vm_row(
    vm: VM, digest: str, *, last_seen: datetime, given: Input | None = None
) -> dict[str, Any]:
    """The row of a new or changed VM. Without ``given`` (not from a scan) the input digest
    is cleared: the record may no longer be what the last digested XML parsed to."""
    return {
        "id": vm.id,
        "name": vm.name,
        "host": vm.host,
        "uri": vm.uri,
        "state": str(vm.state),
        "persistent": vm.persistent,
        "vcpus": vm.vcpus,
        "memory_kib": vm.memory_kib,
        "owner": vm.meta.owner,
        "classification": vm.meta.classification,
        "template": vm.meta.template,
        "registered": vm.meta.registered,
        "record": record_of(vm),
        "record_digest": digest,
        "first_seen": vm.first_seen,
        "last_seen": last_seen,
        "state_since": vm.state_since,
        "gone_at": None,
        "input_digest": given[0] if given else None,
        "input_chains": given[1] if given else None,
    }


def _stored(conn: Connection, ids: list[str]) -> dict[str, Row[Any]]:
    """What is stored about these VMs: by chunked key lookups, or one scan for big sweeps."""
    query = select(
        vms.c.id,
        vms.c.state,
        vms.c.record_digest,
        vms.c.first_seen,
        vms.c.state_since,
        vms.c.gone_at,
        vms.c.input_digest,
    )
    if len(ids) >= FULL_SCAN:
        wanted = set(ids)
        return {row.id: row for row in conn.execute(query) if row.id in wanted}
    out: dict[str, Row[Any]] = {}
    for chunk in chunks(ids):
        for row in conn.execute(query.where(vms.c.id.in_(chunk))):
            out[row.id] = row
    return out


def _split(vms_seen: Iterable[VM]) -> tuple[dict[str, VM], list[VM]]:
    """The sweep's VMs by id, and the ones listed again under an id already seen."""
    batch: dict[str, VM] = {}
    twins: list[VM] = []
    for vm in vms_seen:
        if vm.id in batch:
            twins.append(vm)
        else:
            batch[vm.id] = vm
    return batch, twins


def _refresh_statistics(conn: Connection, written: int) -> None:
    """After a bulk load, let PostgreSQL's planner know the tables are no longer empty.

    Without it, the next sweep's key lookups on a freshly loaded table are planned as
    sequential scans (seconds each); autovacuum would fix it, but only later.
    """
    if conn.dialect.name == "postgresql" and written >= ANALYZE_AFTER:
        conn.execute(text("ANALYZE vms"))
        conn.execute(text("ANALYZE vm_history"))


def _records(conn: Connection, ids: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for chunk in chunks(ids):
        for row in conn.execute(select(vms.c.id, vms.c.record).where(vms.c.id.in_(chunk))):
            out[row.id] = row.record
    return out


def _as_dict(row: Row[Any]) -> dict[str, Any]:
    """The stored record, with the store's own timestamps (aware datetimes) laid over it."""
    out = dict(row.record)
    out.update(
        first_seen=row.first_seen,
        last_seen=seen(row.last_seen, row.gone_at, row.host_seen),
        state_since=row.state_since,
        gone_at=row.gone_at,
    )
    return out


def _query() -> Any:
    listing, on = listing_join(vms, VMS)
    return select(vms, listing.c.last_seen.label("host_seen")).outerjoin(listing, on)


class InventoryRepo(StoreBase):
    def record_inventory(
        self,
        vms_seen: Iterable[VM],
        *,
        now: datetime,
        complete_hosts: set[str],
        source: str = "scan",
        inputs: Mapping[str, Input] | None = None,
        unchanged: Collection[str] = (),
    ) -> InventoryDelta:
        """Record one sweep's VMs; fill ``first_seen`` and ``state_since`` on them.

        ``complete_hosts``: hosts whose VM listing is complete in ``vms_seen``; a VM stored
        on one of them and absent now is marked gone. ``state_since`` is set only by a
        witnessed state change: a VM first seen shut off keeps None (dormancy then falls back
        to its disks' mtime). A gone VM that comes back in the state it left in keeps its
        ``state_since``.

        ``inputs``: VM id → (input digest, chains before lineage) from a scan; a VM whose
        digest differs from the stored one is rewritten even when its record is the same,
        so that the stored digest always names the XML the record was parsed from.
        ``unchanged``: ids the caller rebuilt from the stored record of this same input and
        found equal to it after enrichment; with a matching digest they are not
        fingerprinted again (the fingerprint was most of an unchanged re-scan's time here).
        """
        now = aware(now)
        inputs = inputs or {}
        delta = InventoryDelta()
        batch, twins = _split(vms_seen)
        with self._write() as conn:
            stored = _stored(conn, list(batch))
            rows: list[dict[str, Any]] = []
            history: list[dict[str, Any]] = []
            touched: list[str] = []
            changed: list[tuple[VM, Row[Any], str]] = []
            for vm in batch.values():
                old = stored.get(vm.id)
                if old is None:
                    vm.first_seen, vm.state_since = now, None
                    given = inputs.get(vm.id)
                    rows.append(_vm_row(vm, fingerprint(vm), last_seen=now, given=given))
                    history += history_rows(vm.id, diff(None, sighting_of_vm(vm)), now, source)
                    delta.new.append(vm.id)
                    continue
                vm.first_seen = old.first_seen
                vm.state_since = now if str(vm.state) != old.state else old.state_since
                given = inputs.get(vm.id)
                same_input = given is None or given[0] == old.input_digest
                vouched = given is not None and same_input and vm.id in unchanged
                digest = old.record_digest if vouched else fingerprint(vm)
                if digest == old.record_digest and old.gone_at is None and same_input:
                    delta.unchanged.append(vm.id)
                    if vm.host not in complete_hosts:
                        touched.append(vm.id)
                else:
                    changed.append((vm, old, digest))
            records = _records(conn, [vm.id for vm, _, _ in changed])
            for vm, old, digest in changed:
                before = sighting_of_record(
                    records[vm.id], state=GONE if old.gone_at is not None else old.state
                )
                rows.append(_vm_row(vm, digest, last_seen=now, given=inputs.get(vm.id)))
                history += history_rows(vm.id, diff(before, sighting_of_vm(vm)), now, source)
                delta.changed.append(vm.id)
            upsert(conn, vms, rows, keys=["id"], update=_UPDATED)
            for chunk in chunks(touched):
                conn.execute(update(vms).where(vms.c.id.in_(chunk)).values(last_seen=now))
            history += self._mark_gone(conn, batch, complete_hosts, now, source, delta)
            bump(conn, VMS, complete_hosts, now)
            execute_rows(conn, insert(vm_history), history)
            _refresh_statistics(conn, len(rows))
        for twin in twins:  # not stored, but the engine evaluates it: give it the same clock
            twin.first_seen = batch[twin.id].first_seen
            twin.state_since = batch[twin.id].state_since
            delta.duplicates.append(twin.id)
        delta.history_rows = len(history)
        delta.vm_rows = len(rows) + len(touched) + len(delta.gone)
        return delta

    def known_inputs(self) -> dict[str, tuple[str, dict[str, Any], list[Any]]]:
        """VM id → (input digest, stored record, chains before lineage) of every VM not gone
        that a scan recorded with a digest: what ``KnownDomains`` rebuilds VMs from."""
        query = select(vms.c.id, vms.c.input_digest, vms.c.record, vms.c.input_chains).where(
            vms.c.gone_at.is_(None), vms.c.input_digest.is_not(None)
        )
        with self._read() as conn:
            return {
                row.id: (row.input_digest, row.record, row.input_chains or [])
                for row in conn.execute(query)
            }

    @staticmethod
    def _mark_gone(
        conn: Connection,
        batch: dict[str, VM],
        complete_hosts: set[str],
        now: datetime,
        source: str,
        delta: InventoryDelta,
    ) -> list[dict[str, Any]]:
        """Mark VMs that left a completely listed host; runs before the listing is bumped."""
        if not complete_hosts:
            return []
        listing, on = listing_join(vms, VMS)
        present = (vms.c.host.in_(sorted(complete_hosts)), vms.c.gone_at.is_(None))
        # Ids first: on an unchanged estate every stored VM is in the batch, and reading each
        # one's state and times (two datetime conversions a row) found nothing to mark.
        ids = [vm_id for (vm_id,) in conn.execute(select(vms.c.id).where(*present))]
        left = [vm_id for vm_id in ids if vm_id not in batch]
        if not left:
            return []
        missing = []
        for chunk in chunks(left):
            missing += conn.execute(
                select(vms.c.id, vms.c.state, vms.c.last_seen, listing.c.last_seen.label("seen"))
                .outerjoin(listing, on)
                .where(vms.c.id.in_(chunk), *present)
            ).all()
        gone = [(row.id, seen(row.last_seen, None, row.seen)) for row in missing]
        mark_gone(conn, vms, gone, now)
        delta.gone.extend(row.id for row in missing)
        return history_rows_gone(missing, now, source)

    def host_records(self, host: str) -> list[dict[str, Any]]:
        """The stored records (``VM.to_dict()``) of the VMs on ``host`` not gone, by name:
        one host's read-back in a streaming sweep (``ix_vms_host_name_id``)."""
        query = (
            select(vms.c.record)
            .where(vms.c.host == host, vms.c.gone_at.is_(None))
            .order_by(vms.c.host, vms.c.name, vms.c.id)
        )
        with self._read() as conn:
            return [row.record for row in conn.execute(query)]

    def get_vm(self, id_or_name: str) -> dict[str, Any] | None:
        """The stored record of a VM (``VM.to_dict()`` form) plus ``last_seen``/``gone_at``.

        A name shared by several VMs raises :class:`StoreError` listing them.
        """
        with self._read() as conn:
            vm_id = resolve_vm_id(conn, id_or_name)
            if vm_id is None:
                return None
            row = conn.execute(_query().where(vms.c.id == vm_id)).first()
        return _as_dict(row) if row else None

    def list_vms(
        self, host: str | None = None, state: str | None = None, *, include_gone: bool = False
    ) -> list[dict[str, Any]]:
        """Stored VMs, by host then name. ``state="gone"`` lists the gone ones."""
        query = _query().order_by(vms.c.host, vms.c.name, vms.c.id)
        if host is not None:
            query = query.where(vms.c.host == host)
        if state == GONE:
            query = query.where(vms.c.gone_at.is_not(None))
        else:
            if state is not None:
                query = query.where(vms.c.state == str(state))
            if not include_gone:
                query = query.where(vms.c.gone_at.is_(None))
        with self._read() as conn:
            return [_as_dict(row) for row in conn.execute(query)]


def history_rows_gone(missing: list[Row[Any]], now: datetime, source: str) -> list[dict[str, Any]]:
    return [
        {"vm_id": r.id, "at": now, "field": "state", "old": r.state, "new": GONE, "source": source}
        for r in missing
    ]

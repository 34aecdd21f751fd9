"""Paged, filtered reads for the API and dashboard: one page in SQL, plus the total.

The repositories' ``list_*`` methods return everything, which suits a sweep or a report;
a screen wants 50 rows of 50,000 and the count, filtered in the database.

Example::

    pages = Pages(store)
    items, total = pages.vms(VmQuery(host="kvm1", q="web"), limit=50, offset=0)
    more, _ = pages.vms(VmQuery(host="kvm1", q="web"), limit=50, offset=0, after=vm_key(items[-1]))

Two ways to page: ``offset`` (skip so many rows: simple, but the database still reads every
skipped index entry, so page 10,000 of a million rows costs 10,000 pages' worth) or keyset
``after`` (the sort key of the last row of the previous page: the next page starts there in
the index, at any depth, and rows added or removed meanwhile neither repeat nor vanish
between pages). The API hands the key out as an opaque ``next_cursor`` (:func:`encode`).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, func, literal, or_, select, tuple_

from vmwarden.model import ActionRecord
from vmwarden.store.exceptions import ExceptionsRepo
from vmwarden.store.history import GONE
from vmwarden.store.images import _as_dict as _image_dict
from vmwarden.store.inventory import _as_dict as _vm_dict
from vmwarden.store.inventory import _query as _vm_query
from vmwarden.store.journal import _record
from vmwarden.store.listings import IMAGES, listing_join, seen
from vmwarden.store.tables import findings, images, journal, vm_history, vms

if TYPE_CHECKING:
    from sqlalchemy.sql import ColumnElement

    from vmwarden.store.store import Store

Page = tuple[list[dict[str, Any]], int]
SEVERITIES = ("info", "low", "medium", "high", "critical")
Key = tuple[Any, ...]


def encode(key: Key) -> str:
    """A page's sort key as an opaque cursor (URL-safe base64 of JSON; times as ISO text)."""
    values = [v.isoformat() if isinstance(v, datetime) else v for v in key]
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def decode(cursor: str, types: Sequence[type]) -> Key:
    """The sort key a cursor holds, each value checked against ``types``; ValueError if it
    is not one this module made for that listing."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"not a cursor: {exc}") from None
    if not isinstance(values, list) or len(values) != len(types):
        raise ValueError("not a cursor of this listing")
    out: list[Any] = []
    for raw_value, kind in zip(values, types, strict=True):
        value = raw_value
        if kind is datetime and isinstance(raw_value, str):
            value = datetime.fromisoformat(raw_value)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ValueError("not a cursor of this listing")
        out.append(value)
    return tuple(out)


#: Each listing's sort key: its types (for :func:`decode`) and how a row of it gives it.
VM_KEY = (str, str, str)
IMAGE_KEY = (str, str)
ID_KEY = (int,)
HISTORY_KEY = (datetime, int)


def vm_key(item: dict[str, Any]) -> Key:
    return (item["host"], item["name"], item["id"])


def image_key(item: dict[str, Any]) -> Key:
    return (item["host"], item["path"])


def _like(text: str) -> str:
    """A LIKE pattern matching ``text`` anywhere, its own % and _ taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


@dataclass(frozen=True, slots=True)
class VmQuery:
    host: str | None = None
    state: str | None = None  # a libvirt state, or "gone"
    owner: str | None = None
    classification: str | None = None
    q: str | None = None  # name or id contains (case-insensitive)


@dataclass(frozen=True, slots=True)
class FindingQuery:
    status: str | None = None  # open | resolved
    severity: str | None = None  # this severity or worse
    rule: str | None = None
    resource: str | None = None
    resource_id: str | None = None
    host: str | None = None
    acknowledged: bool | None = None


@dataclass(frozen=True, slots=True)
class JournalQuery:
    vm_only: bool = False  # actions on VMs (not operator events)
    action: str | None = None
    status: str | None = None
    vm_id: str | None = None
    actor: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    exclude_actions: tuple[str, ...] = ()  # e.g. ("notify",): the alerts drown the rest


class Pages:
    def __init__(self, store: Store) -> None:
        self._store = store

    def _page(self, query: Any, cond: ColumnElement[bool], order: list[Any], limit: int,
              offset: int, after: Key | None = None, *,
              descending: bool = False) -> tuple[list[Any], int]:  # fmt: skip
        """One page and the total matched. ``after``: the sort key of the previous page's
        last row (keyset paging; ``order`` is then the plain columns, all one direction)."""
        page = query.where(cond)
        if after is not None:
            cols = [c.element if descending else c for c in order]
            here = tuple_(*cols)
            there = tuple_(*[literal(v, type_=c.type) for c, v in zip(cols, after, strict=True)])
            page = page.where(here < there if descending else here > there)
        with self._store._read() as conn:
            total = conn.execute(
                select(func.count()).select_from(query.where(cond).subquery())
            ).scalar_one()
            rows = conn.execute(page.order_by(*order).limit(limit).offset(offset))
            return rows.all(), int(total)

    def vms(self, f: VmQuery, *, limit: int, offset: int, after: Key | None = None) -> Page:
        where: list[Any] = []
        if f.host is not None:
            where.append(vms.c.host == f.host)
        if f.state == GONE:
            where.append(vms.c.gone_at.is_not(None))
        else:
            where.append(vms.c.gone_at.is_(None))
            if f.state is not None:
                where.append(vms.c.state == f.state)
        if f.owner is not None:
            where.append(vms.c.owner == f.owner)
        if f.classification is not None:
            where.append(vms.c.classification == f.classification)
        if f.q:
            pattern = _like(f.q.lower())
            where.append(
                or_(
                    func.lower(vms.c.name).like(pattern, escape="\\"),
                    vms.c.id.like(pattern, escape="\\"),
                )
            )
        rows, total = self._page(
            _vm_query(),
            and_(True, *where),
            [vms.c.host, vms.c.name, vms.c.id],
            limit,
            offset,
            after,
        )
        return [_vm_dict(r) for r in rows], total

    def images(
        self, *, host: str | None, q: str | None, limit: int, offset: int, after: Key | None = None
    ) -> Page:
        listing, on = listing_join(images, IMAGES)
        query = select(images, listing.c.last_seen.label("host_seen")).outerjoin(listing, on)
        where: list[Any] = [images.c.gone_at.is_(None)]
        if host is not None:
            where.append(images.c.host == host)
        if q:
            where.append(func.lower(images.c.path).like(_like(q.lower()), escape="\\"))
        rows, total = self._page(
            query, and_(True, *where), [images.c.host, images.c.path], limit, offset, after
        )
        out = [
            _image_dict(r)
            | {
                "first_seen": r.first_seen,
                "last_seen": seen(r.last_seen, r.gone_at, r.host_seen),
                "gone_at": r.gone_at,
            }
            for r in rows
        ]
        return out, total

    def findings(
        self, f: FindingQuery, *, limit: int, offset: int, after: Key | None = None
    ) -> Page:
        where: list[Any] = []
        if f.status is not None:
            where.append(findings.c.status == f.status)
        if f.severity is not None:
            where.append(findings.c.severity.in_(SEVERITIES[SEVERITIES.index(f.severity) :]))
        for column, value in (
            (findings.c.rule, f.rule),
            (findings.c.resource, f.resource),
            (findings.c.resource_id, f.resource_id),
            (findings.c.host, f.host),
        ):
            if value is not None:
                where.append(column == value)
        acks = ExceptionsRepo(self._store)
        if f.acknowledged is not None:
            ids = acks.acknowledged_ids()
            where.append(findings.c.id.in_(ids) if f.acknowledged else findings.c.id.not_in(ids))
        rows, total = self._page(
            select(findings), and_(True, *where), [findings.c.id], limit, offset, after
        )
        current = acks.acknowledgements([r.id for r in rows])
        return [finding_dict(r, current.get(r.id)) for r in rows], total

    def finding(self, finding_id: int) -> dict[str, Any] | None:
        with self._store._read() as conn:
            row = conn.execute(select(findings).where(findings.c.id == finding_id)).first()
        if row is None:
            return None
        ack = ExceptionsRepo(self._store).acknowledgements([row.id]).get(row.id)
        return finding_dict(row, ack)

    def journal(
        self, f: JournalQuery, *, limit: int, offset: int, after: Key | None = None
    ) -> tuple[list[ActionRecord], int]:
        where: list[Any] = []
        if f.vm_only:
            where.append(journal.c.vm_id.is_not(None))
        for column, value in (
            (journal.c.action, f.action),
            (journal.c.status, f.status),
            (journal.c.vm_id, f.vm_id),
            (journal.c.actor, f.actor),
        ):
            if value is not None:
                where.append(column == value)
        if f.since is not None:
            where.append(journal.c.created_at >= f.since)
        if f.until is not None:
            where.append(journal.c.created_at < f.until)
        if f.exclude_actions:
            where.append(journal.c.action.not_in(f.exclude_actions))
        rows, total = self._page(
            select(journal),
            and_(True, *where),
            [journal.c.id.desc()],
            limit,
            offset,
            after,
            descending=True,
        )
        return [_record(r) for r in rows], total

    def history(
        self,
        *,
        vm_id: str | None,
        field: str | None,
        value: str | None,
        limit: int,
        offset: int,
        after: Key | None = None,
    ) -> Page:
        """Changes newest first; ``value`` matches old or new (e.g. a MAC: who had it?)."""
        where: list[Any] = []
        if vm_id is not None:
            where.append(vm_history.c.vm_id == vm_id)
        if field is not None:
            where.append(vm_history.c.field == field)
        if value:
            pattern = _like(value.lower())
            where.append(
                or_(
                    func.lower(vm_history.c.old).like(pattern, escape="\\"),
                    func.lower(vm_history.c.new).like(pattern, escape="\\"),
                )
            )
        rows, total = self._page(
            select(vm_history),
            and_(True, *where),
            [vm_history.c.at.desc(), vm_history.c.id.desc()],
            limit,
            offset,
            after,
            descending=True,
        )
        out = [
            {
                "id": r.id,
                "vm_id": r.vm_id,
                "at": r.at,
                "field": r.field,
                "old": r.old,
                "new": r.new,
                "source": r.source,
            }
            for r in rows
        ]
        return out, total


def finding_dict(row: Any, ack: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "id": row.id,
        "rule": row.rule,
        "resource": row.resource,
        "resource_id": row.resource_id,
        "name": row.name,
        "host": row.host,
        "severity": row.severity,
        "evidence": dict(row.evidence or {}),
        "status": row.status,
        "first_seen": row.first_seen,
        "last_seen": row.last_seen,
        "resolved_at": row.resolved_at,
        "acknowledged": ack,
    }

"""Findings across sweeps: opened when first concluded, resolved when no longer concluded.

A finding concluded again exactly as stored is not rewritten: its row only gets the new
``last_seen`` (one ``UPDATE … WHERE id IN`` per chunk), so a re-scan of an unchanged estate
encodes no evidence JSON.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Text, bindparam, cast, select, update

from vmwarden.model import Finding, Severity
from vmwarden.store.base import StoreBase, aware, chunks, upsert
from vmwarden.store.tables import findings

OPEN, RESOLVED = "open", "resolved"
Key = tuple[str, str, str]


@dataclass(slots=True)
class FindingsDelta:
    opened: list[Finding] = field(default_factory=list)  # new, or back after being resolved
    still_open: list[Finding] = field(default_factory=list)
    resolved: list[Finding] = field(default_factory=list)  # as last stored

    @property
    def opened_findings(self) -> list[Finding]:
        """Alias of :attr:`opened` (the name the engine first looked for)."""
        return self.opened


def _finding(row: Any) -> Finding:
    return Finding(
        rule=row.rule,
        resource=row.resource,
        id=row.resource_id,
        name=row.name,
        host=row.host,
        severity=Severity.parse(row.severity),
        evidence=dict(row.evidence or {}),
    )


def _same(old: Any, f: Finding) -> bool:
    """Whether a stored open finding already says what ``f`` says (then only ``last_seen``
    is written).

    ``old.evidence`` is the stored JSON text: equal to our own encoding in the common case
    (no decoding needed), else compared decoded. A tuple read back as a list counts as a
    change, which costs one rewritten row, never a missed one.
    """
    if old.name != f.name or old.host != f.host or old.severity != str(f.severity):
        return False
    raw = old.evidence
    if raw is None:
        return False
    try:
        return raw == json.dumps(f.evidence) or json.loads(raw) == f.evidence
    except (TypeError, ValueError):
        return False


def _row(f: Finding, *, first_seen: datetime, now: datetime) -> dict[str, Any]:
    return {
        "rule": f.rule,
        "resource": f.resource,
        "resource_id": f.id,
        "name": f.name,
        "host": f.host,
        "severity": str(f.severity),
        "evidence": f.evidence,
        "status": OPEN,
        "first_seen": first_seen,
        "last_seen": now,
        "resolved_at": None,
    }


HOSTS_IN_SQL = 1000  # scope hosts filtered in SQL up to this many (an IN list), else here

_COMPARED = (
    findings.c.id,
    findings.c.rule,
    findings.c.resource,
    findings.c.resource_id,
    findings.c.name,
    findings.c.host,
    findings.c.severity,
    cast(findings.c.evidence, Text).label("evidence"),
    findings.c.status,
)


def _stored(conn: Any, current: dict[Key, Finding], hosts: set[str] | None) -> list[Any]:
    """The stored rows a sweep's findings are compared with: all of them, or (``hosts``)
    the open ones on those hosts plus the rows of the keys concluded now (by the unique
    (rule, resource, resource_id) index), wherever they were last seen."""
    if hosts is None:
        return list(conn.execute(select(*_COMPARED)))
    rows = list(
        conn.execute(
            select(*_COMPARED).where(findings.c.host.in_(sorted(hosts)), findings.c.status == OPEN)
        )
    )
    seen = {r.id for r in rows}
    # the unique (rule, resource, resource_id) index, probed with one IN list per column;
    # the exact keys are checked here (a row-value IN list was planned as a scan)
    rules = sorted({k[0] for k in current})
    kinds = sorted({k[1] for k in current})
    for chunk in chunks(sorted({k[2] for k in current})):
        query = select(*_COMPARED).where(
            findings.c.rule.in_(rules),
            findings.c.resource.in_(kinds),
            findings.c.resource_id.in_(chunk),
        )
        rows += [
            r
            for r in conn.execute(query)
            if r.id not in seen and (r.rule, r.resource, r.resource_id) in current
        ]
    return rows


def _first_seen(conn: Any, ids: list[int]) -> dict[int, datetime]:
    """``first_seen`` of the changed open findings only: reading (and converting) it for
    every stored finding was a tenth of an unchanged re-scan's time in the store."""
    out: dict[int, datetime] = {}
    for chunk in chunks(ids):
        query = select(findings.c.id, findings.c.first_seen).where(findings.c.id.in_(chunk))
        out.update((row.id, row.first_seen) for row in conn.execute(query))
    return out


class FindingsRepo(StoreBase):
    def record_findings(
        self,
        concluded: Iterable[Finding],
        *,
        now: datetime,
        scope_rules: set[str] | None = None,
        scope_hosts: set[str] | None = None,
        only_hosts: bool = False,
        exclude_rules: Collection[str] = (),
    ) -> FindingsDelta:
        """Record one sweep's findings; resolve open ones the sweep no longer concludes.

        Only open findings inside the sweep's scope are resolved: rules in ``scope_rules``
        and hosts in ``scope_hosts`` (None: every rule / every host). A host that could not
        be read is left out of ``scope_hosts`` so its findings stay open.
        A resolved finding that comes back is reopened with a new ``first_seen``.

        ``only_hosts`` (with ``scope_hosts``): read only the open findings of those hosts and
        the stored rows of the findings concluded now, not every finding in the store: a
        streaming sweep compares one host at a time (``engine/stream.py``), and reading a
        million-VM estate's findings per host would make it quadratic. ``exclude_rules``:
        rules outside the scope (judged in another pass of that sweep).
        """
        now = aware(now)
        current = {f.key: f for f in concluded}
        delta = FindingsDelta()
        with self._write() as conn:
            scoped = scope_hosts if only_hosts else None
            stored = {
                (r.rule, r.resource, r.resource_id): r for r in _stored(conn, current, scoped)
            }
            rows = []
            touched: list[int] = []  # open and unchanged: only last_seen moves
            rewritten: list[tuple[Finding, Any]] = []  # open and changed: first_seen kept
            for key, f in current.items():
                old = stored.get(key)
                reopened = old is None or old.status != OPEN
                (delta.opened if reopened else delta.still_open).append(f)
                if not reopened:
                    if _same(old, f):
                        touched.append(old.id)
                    else:
                        rewritten.append((f, old))
                    continue
                rows.append(_row(f, first_seen=now, now=now))
            kept = _first_seen(conn, [old.id for _, old in rewritten])
            rows += [_row(f, first_seen=kept[old.id], now=now) for f, old in rewritten]
            upsert(
                conn,
                findings,
                rows,
                keys=["rule", "resource", "resource_id"],
                update=[
                    "name",
                    "host",
                    "severity",
                    "evidence",
                    "status",
                    "first_seen",
                    "last_seen",
                    "resolved_at",
                ],
            )
            for chunk in chunks(touched):
                conn.execute(update(findings).where(findings.c.id.in_(chunk)).values(last_seen=now))
            candidates = [
                key
                for key, r in stored.items()
                if r.status == OPEN
                and key not in current
                and (scope_rules is None or key[0] in scope_rules)
                and key[0] not in exclude_rules
            ]
            resolved = self._resolve(conn, candidates, scope_hosts, now)
            delta.resolved.extend(_finding(r) for r in resolved)
        return delta

    @staticmethod
    def _resolve(
        conn: Any,
        keys: list[tuple[str, str, str]],
        scope_hosts: set[str] | None,
        now: datetime,
    ) -> list[Any]:
        if not keys:
            return []
        wanted = set(keys)
        query = select(findings).where(findings.c.status == OPEN)
        if scope_hosts is not None and len(scope_hosts) <= HOSTS_IN_SQL:
            query = query.where(findings.c.host.in_(sorted(scope_hosts)))
        rows = [
            r
            for r in conn.execute(query)
            if (r.rule, r.resource, r.resource_id) in wanted
            and (scope_hosts is None or r.host in scope_hosts)
        ]
        stmt = (
            update(findings)
            .where(findings.c.id == bindparam("fid"))
            .values(status=RESOLVED, resolved_at=now)
        )
        for chunk in chunks([{"fid": r.id} for r in rows]):
            conn.execute(stmt, list(chunk))
        return rows

    def open_findings(self) -> list[Finding]:
        with self._read() as conn:
            rows = conn.execute(
                select(findings).where(findings.c.status == OPEN).order_by(findings.c.id)
            ).all()
        return [_finding(r) for r in rows]

    def findings(self, status: str | None = None) -> list[dict[str, Any]]:
        """Findings with their lifecycle (``Finding.to_dict()`` plus status and times)."""
        query = select(findings).order_by(findings.c.id)
        if status is not None:
            query = query.where(findings.c.status == status)
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [
            _finding(r).to_dict()
            | {
                "status": r.status,
                "first_seen": r.first_seen,
                "last_seen": r.last_seen,
                "resolved_at": r.resolved_at,
            }
            for r in rows
        ]

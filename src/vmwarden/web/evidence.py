"""A finding's evidence as rows a person reads, not the JSON the filter returned.

Filters return plain JSON (see ``Verdict.match``): scalars, lists of names, lists of records
(vulnerabilities, expiring accounts, stale packages) and small mappings. Shown as ``tojson``
a vulnerability list was a wall of braces. Here each key becomes one row: a scalar or a list
of scalars as text, a list of records as a small table (its columns in first-seen order), a
mapping as ``key: value`` pairs. Content is never trusted: the template escapes every cell.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MAX_ROWS = 50  # a table row per record, up to this many; the rest is counted
# Keys whose values are identifiers: shown in the monospace face, never reflowed as words.
MONO_KEYS = frozenset({"digest", "root", "path", "mac", "machine_id", "fingerprints", "mode"})


@dataclass(slots=True)
class EvidenceRow:
    """One key of the evidence: ``text`` (a line) or ``columns``/``rows`` (a table)."""

    key: str
    label: str
    text: str | None = None
    mono: bool = False
    columns: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    more: int = 0  # records beyond MAX_ROWS


def _label(key: str) -> str:
    return key.replace("_", " ")


def _cell(value: Any) -> str:
    """One value as text: lists joined, mappings as k=v, nothing as a dash."""
    if value is None or value in ("", []):
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(_cell(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={_cell(v)}" for k, v in value.items())
    return str(value)


def _table(key: str, records: list[dict[str, Any]]) -> EvidenceRow:
    columns: list[str] = []
    for rec in records:
        columns += [str(k) for k in rec if str(k) not in columns]
    rows = [[_cell(rec.get(c)) for c in columns] for rec in records[:MAX_ROWS]]
    return EvidenceRow(
        key, _label(key), columns=[_label(c) for c in columns], rows=rows,
        more=max(0, len(records) - MAX_ROWS),
    )  # fmt: skip


def evidence_rows(evidence: Any) -> list[EvidenceRow]:
    """The rows of one finding's evidence, keys in sorted order (stable between findings)."""
    if not isinstance(evidence, dict):
        return [EvidenceRow("evidence", "evidence", text=_cell(evidence))]
    out = []
    for key in sorted(evidence, key=str):
        value = evidence[key]
        name = str(key)
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            out.append(_table(name, value))
        else:
            out.append(EvidenceRow(name, _label(name), text=_cell(value), mono=name in MONO_KEYS))
    return out

"""The part of the OSV schema (https://ossf.github.io/osv-schema/) vmwarden reads, validated.

Feeds are hostile input: every record is checked against these models before it is indexed,
and a record that does not fit is skipped with a warning naming its file. Unknown keys are
ignored (the schema grows); wrong types are not (strict mode: ``"affected": "x"`` is an error,
not a coercion).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

_LIMIT = 4096  # longest id, name or version string accepted


class _Osv(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)


class PackageRef(_Osv):
    ecosystem: str = Field(min_length=1, max_length=200)
    name: str = Field(min_length=1, max_length=_LIMIT)
    purl: str | None = None


class Event(_Osv):
    """Exactly one of the keys is set, as the schema says."""

    introduced: str | None = Field(default=None, max_length=_LIMIT)
    fixed: str | None = Field(default=None, max_length=_LIMIT)
    last_affected: str | None = Field(default=None, max_length=_LIMIT)
    limit: str | None = Field(default=None, max_length=_LIMIT)

    @model_validator(mode="after")
    def _one_key(self) -> Event:
        set_keys = [
            k for k in ("introduced", "fixed", "last_affected", "limit") if getattr(self, k)
        ]
        if len(set_keys) != 1:
            raise ValueError("an event has exactly one of introduced/fixed/last_affected/limit")
        return self

    @property
    def kind(self) -> str:
        for key in ("introduced", "fixed", "last_affected", "limit"):
            if getattr(self, key):
                return key
        raise AssertionError("validated to have one key")  # pragma: no cover

    @property
    def version(self) -> str:
        return str(getattr(self, self.kind))


class Range(_Osv):
    type: str
    events: list[Event] = Field(min_length=1, max_length=10_000)


class SeverityEntry(_Osv):
    type: str
    score: str = Field(max_length=_LIMIT)


class Affected(_Osv):
    package: PackageRef | None = None
    ranges: list[Range] = Field(default=[], max_length=10_000)
    versions: list[str] = Field(default=[], max_length=100_000)
    severity: list[SeverityEntry] = []
    database_specific: dict[str, Any] | None = None
    ecosystem_specific: dict[str, Any] | None = None


class Record(_Osv):
    id: str = Field(min_length=1, max_length=_LIMIT)
    modified: str | None = None
    withdrawn: str | None = None
    aliases: list[str] = []
    related: list[str] = []
    upstream: list[str] = []
    summary: str | None = None
    affected: list[Affected] = Field(default=[], max_length=100_000)
    severity: list[SeverityEntry] = []
    database_specific: dict[str, Any] | None = None


def parse_record(data: Any) -> Record:
    """A validated record, or ValueError with a short reason (first few schema errors)."""
    if not isinstance(data, dict):
        raise ValueError(f"a record is a JSON object, not {type(data).__name__}")
    try:
        return Record.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        parts = [
            f"{'.'.join(str(p) for p in e['loc']) or 'record'}: {e['msg']}" for e in errors[:3]
        ]
        more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
        raise ValueError("; ".join(parts) + more) from None

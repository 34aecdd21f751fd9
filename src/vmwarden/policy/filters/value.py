"""``value``: compare one field of the resource record (a dotted path into ``to_dict()``).

None semantics (a ``None`` in the record means "not collected", a missing key the same):

- ``op: eq, value: null`` matches when the field is missing or null; ``op: ne, value: null``
  matches when it is present. These are the only comparisons that are never unknown, and
  they are how a policy guards another comparison against missing data.
- every other comparison with a missing or null field is **unknown**: the rule fires with
  ``{"unknown": "'meta.owner' is missing or null"}``, because unknown never clears.
- a comparison that cannot be made (``lt`` between a string and a number, ``regex`` on a
  list) is unknown too, naming both types.
"""

from __future__ import annotations

import dataclasses
import operator
import re
import types
import typing
from collections.abc import Callable, Iterable
from datetime import date, datetime
from enum import Enum
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from vmwarden.model import VM, Image
from vmwarden.policy.context import HostRecord
from vmwarden.policy.filters.base import CheckEnv, Filter, filters
from vmwarden.policy.schema import StrictModel
from vmwarden.policy.verdict import NO_MATCH, Outcome, Verdict

if TYPE_CHECKING:
    from vmwarden.policy.context import Context
    from vmwarden.policy.source import PathT

RECORDS: dict[str, type] = {"vm": VM, "image": Image, "host": HostRecord}
Op = Literal["eq", "ne", "lt", "le", "gt", "ge", "in", "contains", "regex"]
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "lt": operator.lt,
    "le": operator.le,
    "gt": operator.gt,
    "ge": operator.ge,
    "in": lambda actual, expected: actual in expected,
    "contains": operator.contains,
}


_SCALARS = frozenset({str, int, float, bool})
MATCH = Outcome.MATCH


class ValueParams(StrictModel):
    key: str = Field(pattern=r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
    op: Op = "eq"
    value: Any

    @model_validator(mode="after")
    def _value_fits_op(self) -> ValueParams:
        if self.op == "in" and not isinstance(self.value, list):
            raise ValueError("op 'in' needs 'value' to be a list")
        if self.op == "regex":
            if not isinstance(self.value, str):
                raise ValueError("op 'regex' needs 'value' to be a string")
            try:
                re.compile(self.value)
            except re.error as exc:
                raise ValueError(f"invalid regex {self.value!r}: {exc}") from None
        if self.value is None and self.op not in ("eq", "ne"):
            raise ValueError(f"'value: null' only works with op eq or ne, not {self.op!r}")
        return self


def jsonable(value: Any) -> Any:
    """The value as ``to_dict()`` would give it (ISO timestamps, enum values, plain dicts)."""
    if value is None or type(value) in _SCALARS:
        return value
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def resolve(record: Any, parts: tuple[str, ...]) -> Any:
    """Follow ``parts`` through dataclasses, dicts and lists; anything missing gives None.

    Equivalent to indexing ``record.to_dict()`` but without copying the whole record.
    """
    value = record
    for part in parts:
        if value is None:
            return None
        if part in getattr(type(value), "__dataclass_fields__", ()):  # records first: most
            value = getattr(value, part)  # keys are fields of the VM (memory_kib, meta.owner)
        elif isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list | tuple):
            try:
                value = value[int(part)]
            except (ValueError, IndexError):
                return None
        else:
            return None
    return jsonable(value)


def check_path(record: type, parts: tuple[str, ...]) -> str | None:
    """Why ``parts`` cannot exist in ``record``'s shape, or None (free-form dicts end checks)."""
    tp: Any = record
    for depth, part in enumerate(parts):
        origin = typing.get_origin(tp)
        if origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            tp, origin = args[0], typing.get_origin(args[0])
        where = ".".join(parts[:depth]) or record.__name__
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            hints = typing.get_type_hints(tp)
            if part not in hints:
                return f"{where!r} has no field {part!r} (valid: {', '.join(sorted(hints))})"
            tp = hints[part]
        elif origin in (list, tuple):
            if not part.lstrip("-").isdigit():
                return f"{where!r} is a list: use an index like '{where}.0', not {part!r}"
            tp = typing.get_args(tp)[0]
        elif origin is dict or tp is Any:
            return None
        else:
            return f"{where!r} is a scalar and has no field {part!r}"
    return None


@filters.register("value")
class Value(Filter):
    """Compares a field of the record: ``key`` (dotted path into ``to_dict()``), ``op``, ``value``.

    Ops: eq ne lt le gt ge in contains regex (``regex`` searches, ``in`` takes a list,
    ``contains`` tests membership in a list/string/mapping field). A missing or null field
    is unknown except for ``eq``/``ne`` against ``null`` (see the module docstring).

    Example:
        - name: big-vm-without-owner
          resource: vm
          severity: low
          filters:
            - {type: value, key: memory_kib, op: gt, value: 16777216}
            - {type: value, key: meta.owner, op: eq, value: null}
            - {type: value, key: name, op: regex, value: "^(tmp|test)-"}
    """

    resources = ("vm", "image", "host")
    Params = ValueParams

    def __init__(self, params: ValueParams) -> None:
        super().__init__(params)
        self.parts = tuple(params.key.split("."))
        # one part: read straight off a record (what ``resolve`` does, without its loop)
        self.field = self.parts[0] if len(self.parts) == 1 else None
        self.regex = re.compile(params.value) if params.op == "regex" else None

    def check(self, env: CheckEnv) -> Iterable[tuple[PathT, str]]:
        record = RECORDS.get(env.resource)
        problem = check_path(record, self.parts) if record else None
        if problem:
            yield ("key",), f"unknown key path {self.params.key!r}: {problem}"

    def match(self, resource: Any, ctx: Context) -> Verdict:
        params = self.params
        field = self.field
        if field is not None and field in getattr(type(resource), "__dataclass_fields__", ()):
            actual = getattr(resource, field)  # a top-level field (memory_kib, name): no walk
            if actual is not None and type(actual) not in _SCALARS:
                actual = jsonable(actual)
        else:
            actual = resolve(resource, self.parts)
        if params.value is None:  # presence tests: eq null / ne null
            present = actual is not None
            return (
                Verdict(MATCH, {params.key: actual}) if present == (params.op == "ne") else NO_MATCH
            )
        if actual is None:
            return Verdict.unknown(f"{params.key!r} is missing or null")
        try:
            if self.regex is not None:
                if isinstance(actual, list | dict | bool):
                    raise TypeError
                hit = self.regex.search(str(actual)) is not None
            else:
                hit = _COMPARE[params.op](actual, params.value)
        except TypeError:
            return Verdict.unknown(
                f"cannot apply {params.op!r} to {params.key!r} ({type(actual).__name__}) "
                f"and {type(params.value).__name__}"
            )
        return Verdict(MATCH, {params.key: actual}) if hit else NO_MATCH

"""Collecting every problem of a policy and reporting them together, with file:line: path.

One ``PolicyValidationError`` carries all problems, one per line of its message, sorted by
line, in the form ``policy.yaml:14: rules[1].filters[0]: unknown filter 'outside-zon' (...)``.
Pydantic's errors are translated here into that form: unknown keys list the valid keys, type
errors say what was expected and what was given.
"""

from __future__ import annotations

import datetime as dt
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from vmwarden.errors import PolicyError
from vmwarden.policy.source import Located, PathT

HINT = "fix the lines listed; every filter's and action's docstring shows a YAML example"

_EXPECTED = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "float_type": "a number",
    "string_type": "a string",
    "bool_type": "true or false",
    "list_type": "a list",
    "tuple_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "none_required": "null",
}


@dataclass(frozen=True, slots=True)
class Problem:
    source: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}:"
        return f"{where} {self.path}: {self.message}" if self.path else f"{where} {self.message}"


class PolicyValidationError(PolicyError):
    """The policy is invalid; ``problems`` lists each one (the message has one per line)."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems), hint=HINT)
        self.problems = problems


def dotted(path: PathT) -> str:
    """``("rules", 1, "filters", 0)`` → ``rules[1].filters[0]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def describe(value: Any) -> str:
    """A value as the YAML author wrote it: its YAML type, and the value when short."""
    if value is None:
        return "null"
    kind = {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a mapping",
        dt.date: "a date",
        dt.datetime: "a timestamp",
    }.get(type(value), type(value).__name__)
    if isinstance(value, list | dict):
        return kind
    text = repr(value)
    return f"{kind} {text if len(text) <= 40 else text[:37] + '...'}"


class Problems:
    """Accumulates problems against one located document; ``raise_if_any`` reports them all."""

    def __init__(self, source: str, located: Located) -> None:
        self.source = source
        self.located = located
        self.items: list[Problem] = []
        for path, message, line in located.problems:
            self.add(path, message, line=line)

    def add(self, path: PathT, message: str, *, line: int | None = None) -> None:
        line = line if line is not None else self.located.line_of(path)
        self.items.append(Problem(self.source, line, dotted(path), message))

    def __bool__(self) -> bool:
        return bool(self.items)

    def raise_if_any(self) -> None:
        if self.items:
            unique = list(dict.fromkeys(self.items))
            unique.sort(key=lambda p: p.line)  # stable: same line keeps discovery order
            raise PolicyValidationError(unique)

    def validate(
        self,
        model: type[BaseModel],
        data: Any,
        path: PathT,
        *,
        extra_keys: tuple[str, ...] = (),
    ) -> Any:
        """Validate ``data`` (found at ``path``) against ``model``; problems are recorded."""
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            for error in exc.errors():
                loc = tuple(error["loc"])
                if error["type"] == "missing":  # point at the mapping that lacks the key
                    loc = loc[:-1]
                self.add((*path, *loc), translate(error, model, extra_keys))
            return None


def translate(error: ErrorDetails, model: type[BaseModel], extra_keys: tuple[str, ...]) -> str:
    """One pydantic error as an operator reads it."""
    kind = error["type"]
    loc = tuple(error["loc"])
    value = error.get("input")
    if kind == "extra_forbidden":
        owner = model_at(model, loc[:-1])
        valid = sorted({*extra_keys, *field_keys(owner)}) if owner else []
        listed = f" (valid: {', '.join(valid)})" if valid else ""
        return f"unknown key {loc[-1]!r}{listed}"
    if kind == "missing":
        return f"missing required key {loc[-1]!r}"
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {describe(value)}"
    if kind == "literal_error":
        choices = literal_choices(model, loc)
        valid = f" (valid: {', '.join(choices)})" if choices else ""
        field = loc[-1] if loc and isinstance(loc[-1], str) else "value"
        note = ""
        if isinstance(value, bool):
            note = " (YAML reads unquoted yes/no/on/off as booleans: quote the value)"
        return f"invalid {field} {value!r}{valid}{note}"
    if kind == "too_short" and isinstance(value, list):
        least = error.get("ctx", {}).get("min_length", 1)
        return f"needs at least {least} item{'s' if least != 1 else ''}, got {len(value)}"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "value_error":
        return str(error["ctx"]["error"]) if "ctx" in error else error["msg"]
    message = error["msg"].replace("Input should", "should").replace("String should", "should")
    return f"{message[0].lower()}{message[1:]}, got {describe(value)}"


def field_keys(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


def _unwrap(tp: Any) -> Any:
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def _type_at(model: type[BaseModel], loc: PathT) -> Any:
    tp: Any = model
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            fields = {f.alias or n: f for n, f in tp.model_fields.items()}
            if part not in fields:
                return None
            tp = fields[part].annotation
        elif typing.get_origin(tp) in (list, tuple, set) and isinstance(part, int):
            tp = typing.get_args(tp)[0]
        elif typing.get_origin(tp) is dict:
            tp = typing.get_args(tp)[1]
        else:
            return None
    return _unwrap(tp)


def model_at(model: type[BaseModel], loc: PathT) -> type[BaseModel] | None:
    """The pydantic model that validates the mapping at ``loc`` (to list its valid keys)."""
    tp = _type_at(model, loc)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def literal_choices(model: type[BaseModel], loc: PathT) -> list[str]:
    tp = _type_at(model, loc)
    if typing.get_origin(tp) is Literal:
        return [str(a) for a in typing.get_args(tp)]
    return []

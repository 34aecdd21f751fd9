"""Turning model objects into stored records, fast.

``VM.to_dict()`` goes through ``dataclasses.asdict``, which deep-copies every value: about
70 µs per VM, seconds for a large estate. :func:`record_of` produces the same dict (a test
holds it to that) without the copies. :func:`fingerprint` tells whether a VM changed since it
was last recorded without building the dict at all.
"""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import datetime
from enum import StrEnum
from typing import Any

_FIELDS: dict[type, tuple[str, ...]] = {}
_PLAIN = frozenset((str, int, float, bool, type(None)))


def record_of(value: Any) -> Any:
    """JSON-ready form of a model object; equal to its ``to_dict()``."""
    kind = type(value)
    if kind in _PLAIN:
        return value
    names = _FIELDS.get(kind)
    if names is None and dataclasses.is_dataclass(value) and not isinstance(value, type):
        names = _FIELDS[kind] = tuple(f.name for f in dataclasses.fields(value))
    if names is not None:
        out = {}
        for name in names:
            item = getattr(value, name)
            out[name] = item if type(item) in _PLAIN else record_of(item)
        return out
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, list | tuple):
        return [item if type(item) in _PLAIN else record_of(item) for item in value]
    if isinstance(value, dict):
        return {k: item if type(item) in _PLAIN else record_of(item) for k, item in value.items()}
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def fingerprint(value: Any) -> str:
    """A digest of everything a dataclass holds (its generated ``repr`` covers every field).

    It can only err towards "changed" (e.g. a dict whose keys came in another order), which
    costs one rewritten row, never a missed change.
    """
    return hashlib.blake2b(repr(value).encode(), digest_size=16).hexdigest()

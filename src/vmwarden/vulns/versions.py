"""Version *keys*: a version string turned once into a value whose ``<`` is its manager's order.

Fleets repeat the same few versions (clones of a template, one baseline per rule), so a key is
computed once per (manager, version string) and cached; comparing two keys is then a plain
tuple comparison. Judging 100k guests against a baseline through univers' Debian comparator
cost about 45 µs a pair (it re-walks both strings character by character, with logging
calls); comparing cached keys costs well under one.

dpkg keys are native and follow dpkg's ``verrevcmp`` exactly: epoch as an integer, then the
upstream part, then the revision, each compared as alternating runs of non-digits (``~``
before the end of a run, the end before letters, letters before other characters, ASCII
within each class) and digit runs (numerically; an empty run is 0). Which strings are
versions at all stays univers' decision (its ``DebianVersion`` normalisation and pattern),
so nothing that parsed before is refused now and nothing refused before parses. rpm and
apk keys are univers ``Version`` objects, cached the same way. Windows programs (``windows``,
the registry's DisplayVersion) have no ordering rule but their dotted numbers: "10.0.19041.1"
→ (10, 0, 19041, 1), trailing zeros dropped so "3.1" equals "3.1.0"; anything else (a
"beta", a date) is no version, so a baseline on it is unknown rather than guessed.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from univers.debian import is_valid_debian_version
from univers.versions import AlpineLinuxVersion, DebianVersion, RpmVersion

from vmwarden.vulns.ecosystems import parse_version

Key = Any  # a tuple for dpkg, a univers Version for rpm and apk: only compare like with like

_RUN = re.compile(r"(\D*)(\d*)")
_DOTTED = re.compile(r"\d{1,9}(?:\.\d{1,9}){0,7}")
_END = ((0,), 0)  # what a finished string reads as: an empty non-digit run, then 0


def _order(ch: str) -> int:
    """dpkg's ``order()``: ``~`` sorts before the end of a run (0), letters after it, and
    every other character after all letters."""
    if ch == "~":
        return -1
    if ("a" <= ch <= "z") or ("A" <= ch <= "Z"):
        return ord(ch)
    return ord(ch) + 256


def part_key(text: str) -> tuple[tuple[tuple[int, ...], int], ...]:
    """The key of an upstream version or revision under dpkg's ``verrevcmp``.

    Each (non-digit run, digit run) pair becomes ((order of each char..., 0), int). The 0
    closing a run is where a shorter run ends, so ``~`` (-1) sorts before it and letters
    after it. Only the first pair can have an empty run, so the ``_END`` pair closing every
    key never meets a real pair except a first one, which is exactly where dpkg compares a
    finished string (and ``""`` reads like ``"0"``).
    """
    if not text:
        return (_END, _END)
    pairs = _RUN.findall(text)  # ends with one empty match: the closing _END
    return tuple(((*map(_order, run), 0), int(digits or 0)) for run, digits in pairs)


def dpkg_key(text: str) -> tuple[int, tuple[Any, ...], tuple[Any, ...]] | None:
    """(epoch, upstream key, revision key) of a Debian version; None when univers would not
    parse it (the same normalisation: whitespace removed, a leading ``v`` dropped)."""
    if not isinstance(text, str):
        return None
    version = DebianVersion.normalize(text).strip()
    if not version or not is_valid_debian_version(version):
        return None
    epoch = 0
    if ":" in version:
        head, _, version = version.partition(":")
        epoch = int(head)
    upstream, dash, revision = version.rpartition("-")
    if not dash:
        upstream, revision = version, "0"
    return epoch, part_key(upstream), part_key(revision)


_UNIVERS = {"rpm": RpmVersion, "apk": AlpineLinuxVersion}


@lru_cache(maxsize=1 << 16)
def version_key(manager: str, text: str) -> Key | None:
    """The comparable key of ``text`` as a ``manager`` (dpkg | rpm | apk | windows)
    version; None when it is not one, or the manager is not one vmwarden compares."""
    if manager == "dpkg":
        return dpkg_key(text)
    if manager == "windows":
        return windows_key(text)
    cls = _UNIVERS.get(manager)
    return parse_version(cls, text) if cls is not None else None


def windows_key(text: str) -> tuple[int, ...] | None:
    """A Windows program's DisplayVersion as its dotted numbers (see the module docstring)."""
    text = text.strip()
    if not _DOTTED.fullmatch(text):
        return None
    parts = [int(x) for x in text.split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def compare(manager: str, a: str, b: str) -> int | None:
    """-1, 0 or 1 as ``a`` sorts before, with or after ``b``; None if either is no version."""
    ka, kb = version_key(manager, a), version_key(manager, b)
    if ka is None or kb is None:
        return None
    return (ka > kb) - (ka < kb)

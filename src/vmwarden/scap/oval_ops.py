"""OVAL's typed comparisons (operation x datatype) and result combinations (operators, checks).

Results are strings of the OVAL enumeration. Comparisons raise :class:`CompareError` where
OVAL says "error" (an int that is not a number, an operation the datatype does not have).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

from vmwarden.vulns.versions import dpkg_key

T, F, U, E, NE, NA = "true", "false", "unknown", "error", "not evaluated", "not applicable"


class CompareError(Exception):
    """The values cannot be compared as the state asks (OVAL result "error")."""


@lru_cache(maxsize=4096)
@lru_cache(maxsize=4096)
def regex(pattern: str, flags: int = 0) -> re.Pattern[str]:
    """A compiled OVAL (PCRE-flavoured) regular expression; content is trusted, so only the
    few PCRE spellings Python lacks are translated. Cached: a state's pattern is compared
    with thousands of items (``re``'s own cache still translates and looks up each time)."""
    try:
        return re.compile(pcre_to_python(pattern), flags)
    except re.error as exc:
        raise CompareError(f"regular expression {pattern!r}: {exc}") from None


_INLINE = re.compile(r"\(\?([a-z]+)\)")


def pcre_to_python(pattern: str) -> str:
    """PCRE spellings Python's ``re`` lacks: ``\\h``, and inline flags switched on and off
    mid-pattern (``(?i)FAIL_DELAY(?-i)``) which become scoped groups (``(?i:FAIL_DELAY)``)."""
    pattern = pattern.replace("\\h", "[ \\t]")
    out = []
    pos = 0
    for m in _INLINE.finditer(pattern):
        if m.start() == 0 and pattern.find(f"(?-{m.group(1)})") < 0:
            continue  # a leading global flag is valid as it is
        off = pattern.find(f"(?-{m.group(1)})", m.end())
        end = off if off >= 0 else len(pattern)
        if m.start() < pos:
            continue
        out.append(pattern[pos : m.start()])
        out.append(f"(?{m.group(1)}:{pattern[m.end() : end]})")
        pos = end + (len(m.group(1)) + 4 if off >= 0 else 0)
    out.append(pattern[pos:])
    return "".join(out)


def glob_to_regex(glob: str, noescape: bool = False) -> str:
    """OVAL's glob_to_regex: ``*`` and ``?`` never match ``/``, a leading dot is not matched."""
    out = ["^"]
    i = 0
    while i < len(glob):
        ch = glob[i]
        if ch == "\\" and not noescape and i + 1 < len(glob):
            out.append(re.escape(glob[i + 1]))
            i += 2
            continue
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            end = glob.find("]", i + 1)
            if end > i:
                body = glob[i + 1 : end]
                out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
                i = end + 1
                continue
            out.append("\\[")
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out) + "$"


def _int(text: str) -> int:
    try:
        return int(text.strip(), 0) if text.strip().startswith("0x") else int(text.strip())
    except ValueError:
        raise CompareError(f"{text!r} is not an int") from None


def _bool(text: str) -> bool:
    t = text.strip().lower()
    if t in ("true", "1"):
        return True
    if t in ("false", "0"):
        return False
    raise CompareError(f"{text!r} is not a boolean")


def _evr(text: str) -> tuple[object, ...]:
    key = dpkg_key(text)
    if key is None:
        raise CompareError(f"{text!r} is not an epoch:version-release")
    return key


def _version(text: str) -> tuple[int, ...]:
    parts = re.split(r"[.\-_:]", text.strip())
    try:
        return tuple(int(p) for p in parts)
    except ValueError:
        raise CompareError(f"{text!r} is not a version") from None


_ORDER = {
    "equals": lambda a, b: a == b,
    "not equal": lambda a, b: a != b,
    "greater than": lambda a, b: a > b,
    "greater than or equal": lambda a, b: a >= b,
    "less than": lambda a, b: a < b,
    "less than or equal": lambda a, b: a <= b,
}


def compare(item: str, state: str, datatype: str = "string", operation: str = "equals") -> bool:
    """Whether the item's value satisfies ``operation`` against the state's value."""
    dt = datatype or "string"
    op = operation or "equals"
    if op == "pattern match":
        return regex(state).search(item) is not None
    if dt in ("string", "binary", "ipv4_address", "ipv6_address"):
        if op == "case insensitive equals":
            return item.lower() == state.lower()
        if op == "case insensitive not equal":
            return item.lower() != state.lower()
        if op in ("equals", "not equal"):
            if dt == "binary":
                item, state = item.lower(), state.lower()
            return _ORDER[op](item, state)
        raise CompareError(f"operation {op!r} is not defined for {dt}")
    if dt == "boolean":
        if op in ("equals", "not equal"):
            return _ORDER[op](_bool(item), _bool(state))
        raise CompareError(f"operation {op!r} is not defined for boolean")
    if dt in ("int", "float"):
        conv = _int if dt == "int" else _float
        a, b = conv(item), conv(state)
        if op == "bitwise and":
            return (int(a) & int(b)) == int(b)
        if op == "bitwise or":
            return (int(a) | int(b)) == int(b)
        if op in _ORDER:
            return _ORDER[op](a, b)
        raise CompareError(f"operation {op!r} is not defined for {dt}")
    if dt in ("evr_string", "debian_evr_string"):
        if op in _ORDER:
            return _ORDER[op](_evr(item), _evr(state))
        raise CompareError(f"operation {op!r} is not defined for {dt}")
    if dt == "version":
        if op in _ORDER:
            return _ORDER[op](_version(item), _version(state))
        raise CompareError(f"operation {op!r} is not defined for version")
    raise CompareError(f"datatype {dt!r} is not supported")


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise CompareError(f"{text!r} is not a float") from None


def combine(operator: str, results: Iterable[str]) -> str:
    """Results joined by a criteria operator (AND, OR, ONE, XOR), OVAL's truth tables."""
    rs = [r for r in results if r != NA]
    if not rs:
        return NA
    t, f = rs.count(T), rs.count(F)
    e, u, ne = rs.count(E), rs.count(U), rs.count(NE)
    op = (operator or "AND").upper()
    if op == "AND":
        if f:
            return F
        return T if t == len(rs) else (E if e else U if u else NE)
    if op == "OR":
        if t:
            return T
        return F if f == len(rs) else (E if e else U if u else NE)
    if op == "ONE":
        if t > 1:
            return F
        if t == 1 and f == len(rs) - 1:
            return T
        if t == 0 and f == len(rs):
            return F
        return E if e else U if u else NE
    if op == "XOR":
        if e or u or ne:
            return E if e else U if u else NE
        return T if t % 2 else F
    raise CompareError(f"operator {operator!r} is unknown")


def check(kind: str, results: list[str]) -> str:
    """Results of several items or values joined by a check (all, at least one, ...)."""
    kind = kind or "all"
    rs = [r for r in results if r != NA]
    if not rs:
        return T if kind in ("all", "none satisfy", "none exist") else F
    t, f = rs.count(T), rs.count(F)
    other = E if E in rs else U if U in rs else NE if NE in rs else None
    if kind == "all":
        return F if f else (T if t == len(rs) else other or U)
    if kind == "at least one":
        return T if t else (F if f == len(rs) else other or U)
    if kind in ("none satisfy", "none exist"):
        return F if t else (T if f == len(rs) else other or U)
    if kind == "only one":
        if t > 1:
            return F
        if t == 1 and f == len(rs) - 1:
            return T
        return F if f == len(rs) else other or U
    raise CompareError(f"check {kind!r} is unknown")


def negate(result: str) -> str:
    return F if result == T else T if result == F else result

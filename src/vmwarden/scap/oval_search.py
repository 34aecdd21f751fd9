"""``finditer`` for OVAL text searches, with the leading ``.*`` shortcut.

SSG's login.defs checks are ``.*\\n[^#]*(PASS_MIN_LEN\\s+\\d+)\\s*\\n`` in single-line mode:
CPython tries every position of the file, and from each one ``.*`` backtracks over every line
and ``[^#]*`` runs on to the next ``#`` — 0.2 s of the Debian 11 evaluation's ~1 s for one
12 KB file, and over 1 CPU s (then 'error') for a hostile one. When a pattern starts with
``.*`` (outside any alternation), a later start position can only reach a subset of the ends
an earlier one reaches, with the rest of the pattern evaluated at the same absolute positions:
so a match can only start where the search resumes (DOTALL: ``.*`` spans lines) or, without
DOTALL, there or at a line start. Only those positions are tried, and the matches are exactly
``finditer``'s. An empty match (where ``finditer``'s rules for the next position are subtle)
makes the whole search fall back to ``finditer``.
"""

from __future__ import annotations

import functools
import re
from typing import Any

try:  # CPython's own parser of patterns (a private module; without it, no shortcut)
    from re import _constants as _sre_c  # type: ignore[attr-defined]
    from re import _parser as _sre_p  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - another Python
    _sre_p = _sre_c = None


@functools.lru_cache(maxsize=2048)
def leading_dot_star(rx: re.Pattern[str]) -> str | None:
    """``"line"`` when every match of ``rx`` begins with ``.*`` within one line, ``"text"``
    when with a ``.*`` that spans lines (DOTALL), ``None`` otherwise."""
    if _sre_p is None:
        return None
    try:
        parsed: Any = _sre_p.parse(rx.pattern, rx.flags)
    except Exception:  # an unparsable pattern is not ours to shortcut
        return None
    if not len(parsed):
        return None
    op, arg = parsed[0]
    repeats = {_sre_c.MAX_REPEAT, _sre_c.MIN_REPEAT, getattr(_sre_c, "POSSESSIVE_REPEAT", None)}
    if op not in repeats:
        return None
    low, _high, body = arg
    if not (low == 0 and len(body) == 1 and body[0][0] == _sre_c.ANY):
        return None
    return "text" if (rx.flags | parsed.state.flags) & re.DOTALL else "line"


def finditer(rx: re.Pattern[str], text: str) -> list[re.Match[str]]:
    """``list(rx.finditer(text))``, trying only the positions :func:`leading_dot_star`
    allows."""
    mode = leading_dot_star(rx)
    if mode is None:
        return list(rx.finditer(text))
    out: list[re.Match[str]] = []
    pos, size = 0, len(text)
    while pos <= size:
        m = rx.match(text, pos)
        if m is not None:
            if m.end() == m.start():
                return list(rx.finditer(text))
            out.append(m)
            pos = m.end()
            continue
        nl = -1 if mode == "text" else text.find("\n", pos)
        if nl < 0:
            break
        pos = nl + 1
    return out

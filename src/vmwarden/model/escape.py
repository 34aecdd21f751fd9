"""Escaping for each sink that shows text from guests, domain definitions and file names.

A guest's ``PRETTY_NAME``, a domain's ``<name>`` and an image's file name are written by
whoever controls the VM or the directory, and they reach sinks that interpret text: a
terminal runs escape sequences (``ESC[2J`` clears it, OSC 8 makes links), Rich runs its own
markup (``[link=…]``, and ``x[/]`` raises ``MarkupError`` mid-report), a spreadsheet runs
cells starting with ``=``, ``+``, ``-`` or ``@`` as formulas, and syslog or an email header
takes a line break as the start of a new record. Each sink gets one function here, applied
where the text is written, never earlier (the store and JSON keep the exact value).

Control characters are shown, not removed: ``\\x1b[2J`` in a report tells the operator what
the guest tried, where a silent strip would hide it. This module is in ``model`` (the first
layer) so notify and cli use the same rules.

Example::

    console.print(for_terminal(vm.name))    # markup and escape sequences shown as text
    writer.writerow([for_csv(c) for c in cells])
    send(f"... {for_syslog(alert.summary)}")
"""

from __future__ import annotations

import re

_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}

# C0, DEL and C1 controls; the bidirectional overrides and isolates (a name can be made to
# read backwards, "Trojan Source"); the Unicode line and paragraph separators.
_CONTROLS = "\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029"
_ANY_CONTROL = re.compile(f"[{_CONTROLS}]")
# The same, but tab and line breaks kept: a CSV cell or an HTML page may hold several lines.
_NON_TEXT_CONTROL = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)

# Cells a spreadsheet (Excel, LibreOffice, Google Sheets) evaluates: OWASP's list, plus the
# fullwidth forms some of them fold to ASCII and a leading line break.
_FORMULA_START = tuple("=+-@\t\r\n\uff1d\uff0b\uff0d\uff20")
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def _shown(m: re.Match[str]) -> str:
    ch = m.group()
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def visible(text: str) -> str:
    """Every control character as its escape (``\\x1b``, ``\\n``, ``\\u202e``): one line,
    nothing a terminal or a line-oriented reader acts on."""
    return _ANY_CONTROL.sub(_shown, text)


def visible_keep_lines(text: str) -> str:
    """As :func:`visible`, but tabs and line breaks stay (multi-line cells, HTML)."""
    return _NON_TEXT_CONTROL.sub(_shown, text)


def for_terminal(text: str) -> str:
    """For a Rich ``print`` of a markup string: controls shown, Rich markup escaped.

    Prefer ``rich.text.Text(visible(text))`` (no markup, no emoji codes) where a renderable
    can be passed; this is for text inside a markup string.
    """
    from rich.markup import escape  # lazily: notify and the hook never need Rich

    return escape(visible(text))


def for_csv(text: str) -> str:
    """A CSV cell a spreadsheet shows as text: a formula-like start gets a ``'`` prefix
    (OWASP's CSV-injection advice), plain numbers (``-3``, ``+1.5``) stay numbers, and
    controls other than tab and line breaks are shown."""
    if text.startswith(_FORMULA_START) and not _PLAIN_NUMBER.fullmatch(text):
        text = "'" + text
    return visible_keep_lines(text)


def for_syslog(text: str) -> str:
    """One syslog record stays one line: CR, LF and every other control are shown."""
    return visible(text)


def for_header(text: str) -> str:
    """An email header value (Subject): no CR/LF, so no header or body can be injected."""
    return visible(text)

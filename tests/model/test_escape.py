"""Sink escapers: what each sink gets of text a guest, a domain or a file name chose."""

from __future__ import annotations

import csv
import io

import pytest
from rich.console import Console
from rich.text import Text

from vmwarden.model.escape import (
    for_csv,
    for_header,
    for_syslog,
    for_terminal,
    visible,
    visible_keep_lines,
)

HOSTILE = "a\x1b[2Jb\x1b]8;;https://evil.example/\x1b\\l\x9b31mc\r\nd\x00\x7f\u202ee"


def test_visible_shows_every_control_and_leaves_text_alone() -> None:
    assert visible(HOSTILE) == (
        "a\\x1b[2Jb\\x1b]8;;https://evil.example/\\x1b\\l\\x9b31mc\\r\\nd\\x00\\x7f\\u202ee"
    )
    assert visible("wéb01 ünïcode [x] 日本 \\ tab-free") == "wéb01 ünïcode [x] 日本 \\ tab-free"
    assert visible("a\tb\u2028c") == "a\\tb\\u2028c"


def test_visible_keep_lines_keeps_tabs_and_line_breaks_only() -> None:
    assert visible_keep_lines("a\tb\r\nc\x1b[2J\x85") == "a\tb\r\nc\\x1b[2J\\x85"


@pytest.mark.parametrize(
    "name", ["x[/]", "[link=https:evil.example]web01", "[bold red]fake[/]", "\\[x]", ":smile:"]
)
def test_for_terminal_prints_markup_literally(name: str) -> None:
    console = Console(file=io.StringIO(), force_terminal=True, width=200, emoji=True)
    console.print(f"[bold]vm:[/] {for_terminal(name)}", highlight=False)
    console.print(Text(visible(name)))
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert "\x1b]8" not in out  # no OSC 8 hyperlink
    plain = out.replace("\x1b[1m", "").replace("\x1b[0m", "")
    assert plain.splitlines()[1] == name
    if name != ":smile:":  # emoji codes are the markup string's business; Text keeps them
        assert plain.splitlines()[0] == f"vm: {name}"


@pytest.mark.parametrize(
    ("cell", "want"),
    [
        ("=1+1+cmd|' /C calc'!A0", "'=1+1+cmd|' /C calc'!A0"),
        ("@SUM(1+1)", "'@SUM(1+1)"),
        ('+HYPERLINK("http://evil.example","x")', '\'+HYPERLINK("http://evil.example","x")'),
        ("-2+3", "'-2+3"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("\uff1d1+1", "'\uff1d1+1"),
        ("-3", "-3"),
        ("+1.5", "+1.5"),
        ("-1e5", "-1e5"),
        ("web01", "web01"),
        ("a=b", "a=b"),
        ("", ""),
        ("x\x1b[2J", "x\\x1b[2J"),
    ],
)
def test_for_csv(cell: str, want: str) -> None:
    assert for_csv(cell) == want


def test_for_csv_survives_a_round_trip_through_the_csv_module() -> None:
    buf = io.StringIO()
    csv.writer(buf).writerow([for_csv("=1+1"), for_csv("two\nlines"), for_csv("-4")])
    assert next(csv.reader(io.StringIO(buf.getvalue()))) == ["'=1+1", "two\nlines", "-4"]


def test_for_syslog_and_for_header_are_one_line() -> None:
    for fn in (for_syslog, for_header):
        out = fn("img\n<13>1 2024-01-01T00:00:00Z forged - - - evil\r\x1b")
        assert "\n" not in out and "\r" not in out and "\x1b" not in out
        assert out == "img\\n<13>1 2024-01-01T00:00:00Z forged - - - evil\\r\\x1b"

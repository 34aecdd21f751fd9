"""oval_search.finditer (the leading ``.*`` shortcut) finds exactly what ``re.finditer``
finds: spans and groups, for patterns that take the shortcut and those that must not."""

from __future__ import annotations

import random
import re

import pytest

from vmwarden.scap.oval_search import finditer, leading_dot_star

SHORTCUT = [
    r".*\n[^#]*(P\s+\d+)\s*\n",  # SSG's login.defs shape
    r".*(?<=a)b",
    r".*(?<!#)1",
    r".*\bx",
    r".*\n^a",
    r".*\Z",
    r".*$",
    r".*?\n",
    r".*(?=b)",
    r".*x",
    r".*?a+",
    r".*(a|b)$",
    r".*+a",
    r".*",  # empty matches: falls back to finditer
]


@pytest.mark.parametrize("pattern", SHORTCUT)
def test_the_shortcut_finds_what_finditer_finds(pattern: str) -> None:
    rng = random.Random(pattern)
    for flags in (0, re.M, re.S, re.M | re.S):
        rx = re.compile(pattern, flags)
        assert leading_dot_star(rx) == ("text" if flags & re.S else "line")
        for _ in range(1500):
            text = "".join(rng.choice("ab#\n x1P ") for _ in range(rng.randint(0, 50)))
            want = [(m.span(), m.groups()) for m in rx.finditer(text)]
            assert [(m.span(), m.groups()) for m in finditer(rx, text)] == want, text


@pytest.mark.parametrize("pattern", [r".*a|b", r"x.*", r"(.*)a", r".+a", r"\n.*"])
def test_patterns_that_do_not_start_with_a_bare_dot_star_take_no_shortcut(pattern: str) -> None:
    assert leading_dot_star(re.compile(pattern)) is None


def test_inline_dotall_counts() -> None:
    assert leading_dot_star(re.compile(r"(?s).*a")) == "text"

"""Keyset paging over HTTP: each list's ``next_cursor`` walks it to the end, every row once,
in the offset listing's order; a cursor that is not one is a 422 problem."""

from __future__ import annotations

from typing import Any

import pytest


def _walk(user: Any, url: str, limit: int, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(100):
        query = {"limit": limit, **params} | ({"cursor": cursor} if cursor else {})
        page = user.get(url, params=query).json()
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            assert len(page["items"]) < limit or not page["items"] or len(items) == page["total"]
            return items
    raise AssertionError("the walk did not end")


@pytest.mark.parametrize(
    ("url", "key", "params"),
    [
        ("/api/vms", "id", {}),
        ("/api/findings", "id", {"status": "open"}),
        ("/api/images", "path", {}),
        ("/api/audit", "id", {}),
        ("/api/history", None, {}),
    ],
)
def test_each_list_walks_by_cursor_like_offset(users, url, key, params):
    a = users["auditor"]
    everything = a.get(url, params={"limit": 500, **params}).json()
    assert everything["total"] > 3, everything  # more than one page of 3
    walked = _walk(a, url, 3, **params)
    assert len(walked) == everything["total"]
    assert walked == everything["items"]  # same rows, same order, none twice
    if key is not None:
        assert len({r[key] for r in walked}) == len(walked)


def test_a_bad_cursor_or_a_cursor_with_an_offset_is_a_422_problem(users):
    a = users["auditor"]
    first = a.get("/api/vms", params={"limit": 5}).json()
    assert first["next_cursor"]
    for params in (
        {"cursor": "not-a-cursor"},
        {"cursor": first["next_cursor"], "offset": 5},
    ):
        r = a.get("/api/vms", params=params)
        assert r.status_code == 422, r.text
        assert r.headers["content-type"] == "application/problem+json"
    wrong = a.get("/api/findings", params={"cursor": first["next_cursor"]})  # a VM's key
    assert wrong.status_code == 422

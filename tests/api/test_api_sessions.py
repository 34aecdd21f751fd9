"""Sign-in sessions over the API: an admin lists and ends anyone's, a user their own; an
ended session's cookie is refused at once; every end is in the audit log with the reason;
the client address is the socket peer unless the server trusts a proxy.

Sessions are made by the API's own ``sign_in`` + ``login_session`` (a minimal login route,
as the dashboard's), over the real app and a real SQLite store."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace

import pytest
from fastapi import Request
from fastapi.testclient import TestClient

from tests.api.conftest import auth
from vmwarden.api import Settings, create_app
from vmwarden.api.auth import CSRF_HEADER, login_session, sign_in


def _app(settings: Settings):
    app = create_app(settings)

    @app.post("/test-login")
    async def test_login(request: Request) -> dict[str, str]:
        body = await request.json()
        user = sign_in(request, request.app.state.vmwarden.store, body["token"], via="form")
        return {"csrf": login_session(request, user) if user else ""}

    return app


@pytest.fixture
def app(settings: Settings, tokens: dict[str, str]):
    return _app(settings)


@pytest.fixture
def api(app) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


def browser(app, token: str, headers: dict[str, str] | None = None) -> tuple[TestClient, str]:
    """A fresh client signed in with ``token``; (client, its CSRF token)."""
    c = TestClient(app)
    r = c.post("/test-login", json={"token": token}, headers=headers or {})
    assert r.json()["csrf"], r.text
    return c, r.json()["csrf"]


def end(c: TestClient, url: str, token: str | None = None, **body: str):
    headers = auth(token) if token else {}
    return c.request("DELETE", url, json=body, headers=headers)


def test_an_admin_lists_and_ends_a_session_and_its_cookie_stops_at_once(app, api, tokens):
    olga, _ = browser(app, tokens["operator"])
    other, _ = browser(app, tokens["operator"])
    cookie = olga.cookies.get("vmwarden_session")
    assert olga.get("/api/me").json()["name"] == "operator"

    listed = api.get("/api/sessions", headers=auth(tokens["admin"])).json()
    assert listed["total"] == 2 and listed["limit"] == 50
    item = listed["items"][0]
    assert re.fullmatch(r"[0-9a-f]{16}", item["id"])
    assert item["user"] == "operator" and item["role"] == "operator"
    assert item["source"] == "testclient" and item["current"] is False
    assert item["expires_at"] > item["last_seen_at"] >= item["created_at"]
    for secret in (cookie, tokens["operator"]):
        assert secret not in api.get("/api/sessions", headers=auth(tokens["admin"])).text
    mine = olga.get("/api/me/sessions").json()["items"]
    (own,) = [s for s in mine if s["current"]]

    assert end(api, f"/api/sessions/{own['id']}", tokens["admin"]).status_code == 422  # no reason
    blank = end(api, f"/api/sessions/{own['id']}", tokens["admin"], reason="  ")
    assert blank.status_code == 422
    r = end(api, f"/api/sessions/{own['id']}", tokens["admin"], reason="laptop stolen, IR-12")
    assert r.status_code == 200, r.text
    assert r.json()["id"] == own["id"] and r.json()["user"] == "operator"
    assert olga.get("/api/me").status_code == 401  # the very next request
    assert other.get("/api/me").json()["name"] == "operator"  # the other session lives
    again = end(api, f"/api/sessions/{own['id']}", tokens["admin"], reason="twice")
    assert again.status_code == 404

    log = api.get(
        "/api/audit", params={"action": "session-end"}, headers=auth(tokens["auditor"])
    ).json()
    (entry,) = log["items"]
    assert entry["actor"] == "admin" and entry["reason"] == "laptop stolen, IR-12"
    assert entry["changes"]["user"] == "operator" and entry["changes"]["session"] == own["id"]
    assert entry["created_at"]


def test_paging_and_the_user_filter(app, api, tokens):
    for name in ("auditor", "operator", "operator"):
        browser(app, tokens[name])
    admin = auth(tokens["admin"])
    page = api.get("/api/sessions", params={"limit": 2, "offset": 2}, headers=admin).json()
    assert page["total"] == 3 and len(page["items"]) == 1 and page["offset"] == 2
    only = api.get("/api/sessions", params={"user": "operator"}, headers=admin).json()
    assert only["total"] == 2 and {s["user"] for s in only["items"]} == {"operator"}
    assert api.get("/api/sessions", params={"user": "no one!"}, headers=admin).status_code == 422


def test_a_user_ends_their_own_session_but_not_anothers(app, api, tokens):
    laptop, _ = browser(app, tokens["auditor"])
    phone, csrf = browser(app, tokens["auditor"])
    stranger, _ = browser(app, tokens["operator"])
    everyone = api.get("/api/sessions", headers=auth(tokens["admin"])).json()["items"]
    ids = {s["user"]: s["id"] for s in everyone}
    mine = phone.get("/api/me/sessions").json()
    assert mine["total"] == 2 and {s["user"] for s in mine["items"]} == {"auditor"}
    (laptop_id,) = [s["id"] for s in mine["items"] if not s["current"]]

    # a session call that writes needs the CSRF header, like every other
    assert end(phone, f"/api/me/sessions/{laptop_id}", reason="left it").status_code == 403
    r = phone.request(
        "DELETE",
        f"/api/me/sessions/{laptop_id}",
        json={"reason": "left it at the office"},
        headers={CSRF_HEADER: csrf},
    )
    assert r.status_code == 200, r.text
    assert laptop.get("/api/me").status_code == 401 and phone.get("/api/me").status_code == 200

    foreign = end(api, f"/api/me/sessions/{ids['operator']}", tokens["auditor"], reason="x")
    assert foreign.status_code == 404  # as if unknown: no hint that it exists
    assert stranger.get("/api/me").json()["name"] == "operator"
    assert end(api, "/api/me/sessions/not-an-id", tokens["auditor"], reason="x").status_code == 422


@pytest.mark.parametrize("trust", [False, True])
def test_x_forwarded_for_counts_only_behind_a_trusted_proxy(settings, tokens, trust):
    app = _app(replace(settings, trust_proxy=trust))
    forwarded = {"X-Forwarded-For": "198.51.100.7, 203.0.113.9"}
    with TestClient(app) as api:
        browser(app, tokens["operator"], headers=forwarded)
        (item,) = api.get("/api/sessions", headers=auth(tokens["admin"])).json()["items"]
        assert item["source"] == ("203.0.113.9" if trust else "testclient")
        bad = api.get("/api/me", headers={**auth("vmw_" + "A" * 43), **forwarded})
        assert bad.status_code == 401
        garbage = {"X-Forwarded-For": "not-an-address"}
        api.get("/api/me", headers={**auth("vmw_" + "B" * 43), **garbage})
        log = api.get(
            "/api/audit", params={"action": "login-failed"}, headers=auth(tokens["auditor"])
        ).json()
    sources = [e["changes"]["source"] for e in reversed(log["items"])]
    assert sources == (["203.0.113.9", "testclient"] if trust else ["testclient", "testclient"])

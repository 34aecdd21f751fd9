"""Authentication and roles: the RBAC matrix, anonymous access, hashed tokens, disabled and
rotated users, and the session interface the dashboard builds on."""

from __future__ import annotations

import hashlib
import re
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi import Request
from fastapi.testclient import TestClient

from tests.api.conftest import OFF_VM, PCI_VM, RUN_VM, auth
from vmwarden.api import create_app
from vmwarden.api.auth import CSRF_HEADER, authenticate_token, login_session
from vmwarden.store.session_admin import public_id
from vmwarden.store.sessions import SessionsRepo
from vmwarden.store.users import UsersRepo

ALLOWED = {
    "quarantine": {"operator", "admin", "admin2"},
    "release": {"operator", "admin", "admin2"},
    "acknowledge": {"operator", "admin", "admin2"},
    "request-exception": {"operator", "admin", "admin2"},
    "approve-exception": {"admin", "admin2"},
    "reject-exception": {"admin", "admin2"},
    "approve-template": {"admin", "admin2"},
    "trigger-scan": {"admin", "admin2"},
    "add-user": {"admin", "admin2"},
    "disable-user": {"admin", "admin2"},
    "rotate-user": {"admin", "admin2"},
    "end-session": {"admin", "admin2"},
    "end-own-session": {"auditor", "operator", "admin", "admin2"},  # one's own access only
}
# Each write route of the OpenAPI document -> its matrix entry (a new route must be added).
WRITES = {
    ("post", "/api/vms/{vm}/quarantine"): "quarantine",
    ("post", "/api/vms/{vm}/release"): "release",
    ("post", "/api/findings/{finding_id}/acknowledge"): "acknowledge",
    ("post", "/api/exceptions"): "request-exception",
    ("post", "/api/exceptions/{exception_id}/approve"): "approve-exception",
    ("post", "/api/exceptions/{exception_id}/reject"): "reject-exception",
    ("post", "/api/templates"): "approve-template",
    ("post", "/api/scans"): "trigger-scan",
    ("post", "/api/users"): "add-user",
    ("post", "/api/users/{name}/disable"): "disable-user",
    ("post", "/api/users/{name}/rotate"): "rotate-user",
    ("delete", "/api/sessions/{session_id}"): "end-session",
    ("delete", "/api/me/sessions/{session_id}"): "end-own-session",
}
ORDER = ("auditor", "operator", "admin", "admin2")  # lower roles first: their 403s change nothing


def _until(days: int = 7) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


def _call(users, route: str, role: str, ctx: dict):
    u = users[role]
    reason = {"reason": f"by {role}"}
    match route:
        case "quarantine":
            return u.post(f"/api/vms/{OFF_VM}/quarantine", json=reason)
        case "release":
            return u.post(f"/api/vms/{PCI_VM}/release", json=reason)
        case "acknowledge":
            return u.post(f"/api/findings/{ctx['finding']}/acknowledge", json=reason)
        case "request-exception":
            body = {"rule": "unregistered-vm", "vm": RUN_VM, "until": _until()} | reason
            return u.post("/api/exceptions", json=body)
        case "approve-exception":
            return u.post(f"/api/exceptions/{ctx['exception']}/approve", json=reason)
        case "reject-exception":
            return u.post(f"/api/exceptions/{ctx['exception']}/reject", json=reason)
        case "approve-template":
            path = str(ctx["image_dir"] / "templates" / "base.img")
            return u.post("/api/templates", json={"path": path, "name": f"base-{role}"})
        case "trigger-scan":
            return u.post("/api/scans", json=reason)
        case "add-user":
            return u.post("/api/users", json={"name": f"new-{role}", "role": "auditor"})
        case "disable-user":
            return u.post("/api/users/auditor/disable", json=reason)
        case "rotate-user":
            return u.post("/api/users/auditor/rotate", json=reason)
        case "end-session":  # the operator's session, ended by whoever may
            url = f"/api/sessions/{ctx['session']['operator']}"
            return u.client.request("DELETE", url, headers=u.headers, json=reason)
        case "end-own-session":
            url = f"/api/me/sessions/{ctx['session'][role]}"
            return u.client.request("DELETE", url, headers=u.headers, json=reason)
    raise AssertionError(route)


def _sessions(store) -> dict[str, str]:
    """A live session row per user (as sign-in makes them); role -> its public id."""
    made = {}
    for name in ORDER:
        sid_hash = hashlib.sha256(f"rbac-{name}".encode()).hexdigest()
        SessionsRepo(store).create(sid_hash, UsersRepo(store).get_user(name).id)
        made[name] = public_id(sid_hash)
    return made


@pytest.mark.parametrize("route", sorted(ALLOWED))
def test_rbac_matrix(client, users, estate, route):
    ctx = {"image_dir": estate.image_dir}
    # a quarantined VM to release, a finding, an exception requested by the operator
    assert users["admin"].post(f"/api/vms/{PCI_VM}/quarantine", json={"reason": "setup"}).is_success
    findings = users["auditor"].get("/api/findings", params={"rule": "unregistered-vm"}).json()
    ctx["finding"] = findings["items"][0]["id"]
    body = {"rule": "outside-zone", "vm": PCI_VM, "until": _until(), "reason": "setup"}
    ctx["exception"] = users["operator"].post("/api/exceptions", json=body).json()["id"]
    ctx["session"] = _sessions(client.app.state.vmwarden.store)

    for role in ORDER:
        r = _call(users, route, role, ctx)
        if role in ALLOWED[route]:
            assert r.status_code not in (401, 403), (role, r.text)
            assert r.status_code < 500, (role, r.text)
        else:
            assert r.status_code == 403, (role, r.status_code, r.text)
            assert r.headers["content-type"] == "application/problem+json"
        jobs = client.app.state.vmwarden.jobs
        for job in jobs.recent():
            assert jobs.wait(job.id, 60).status == "done", job.error


def test_every_write_route_is_in_the_matrix(client, tokens):
    spec = client.get("/api/openapi.json", headers=auth(tokens["auditor"])).json()
    writes = {
        (method, path)
        for path, ops in spec["paths"].items()
        for method in ops
        if method in ("post", "put", "patch", "delete")
    }
    assert writes == set(WRITES)
    assert set(WRITES.values()) == set(ALLOWED)


def test_auditors_review_users_and_sessions_read_only(client, users, tokens):
    """#10.11: GET /api/users and /api/sessions answered 403 to an auditor; access reviews
    are their job. They read, and still cannot end a session (the matrix checks the rest)."""
    made = _sessions(client.app.state.vmwarden.store)
    for role in ("auditor", "operator", "admin"):
        listed = users[role].get("/api/sessions")
        assert listed.status_code == 200, (role, listed.text)
        assert {i["user"] for i in listed.json()["items"]} == set(ORDER)
        assert listed.json()["total"] == len(ORDER)
    assert users["auditor"].get("/api/me/sessions").json()["total"] == 1

    people = users["auditor"].get("/api/users")
    assert people.status_code == 200
    by_name = {u["name"]: u for u in people.json()}
    assert set(by_name) == set(ORDER)
    auditor = by_name["auditor"]
    assert (auditor["role"], auditor["disabled"], auditor["created_by"]) == (
        "auditor",
        False,
        "setup",
    )
    assert auditor["created_at"] and auditor["last_sign_in_at"]  # this very request signed in
    assert by_name["admin2"]["last_sign_in_at"] is None  # never used
    text = people.text
    assert not any(token[4:16] in text or token in text for token in tokens.values())
    assert not {"token_id", "token_hash"} & set(auditor)

    end = users["auditor"].client.request(
        "DELETE", f"/api/sessions/{made['operator']}", headers=users["auditor"].headers,
        json={"reason": "not mine"},
    )  # fmt: skip
    assert end.status_code == 403
    assert users["auditor"].post("/api/users/operator/disable", json={}).status_code == 403


def test_an_auditor_reads_every_get_route(client, users):
    """Auditors read: no GET of the API is refused to them for their role."""
    spec = client.get("/api/openapi.json", headers=users["auditor"].headers).json()
    gets = [path for path, ops in spec["paths"].items() if "get" in ops]
    assert "/api/users" in gets and "/api/sessions" in gets
    for path in gets:
        r = users["auditor"].get(_concrete(path))
        assert r.status_code != 403 and r.status_code < 500, (path, r.status_code, r.text)


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", lambda m: "1" if m.group(0).endswith("id}") else "x", path)


def test_anonymous_gets_401_everywhere_but_health(client, tokens):
    spec = client.get("/api/openapi.json", headers=auth(tokens["auditor"])).json()
    assert client.get("/api/openapi.json").status_code == 401
    anonymous = {r.path for r in client.app.routes if getattr(r, "path", "").startswith("/api")} - {
        "/api/openapi.json",
        "/api/docs",
        "/api/docs/assets/{name}",  # tests/api/test_api_docs.py: 401 without sign-in too
    }
    assert anonymous <= set(spec["paths"])  # nothing under /api hides from the check below
    checked = 0
    for path, ops in spec["paths"].items():
        for method in ops:
            r = client.request(method.upper(), _concrete(path), json={})
            if path == "/api/health":
                assert r.status_code == 200
                continue
            assert r.status_code == 401, (method, path, r.status_code)
            assert r.headers["www-authenticate"] == "Bearer"
            checked += 1
    assert checked >= 25


@pytest.mark.parametrize(
    "header",
    [
        "Bearer vmw_" + "A" * 43,  # well-formed, unknown
        "Bearer nonsense",
        "Bearer ",
        "Basic YWRtaW46YWRtaW4=",
        "bearer",
    ],
)
def test_bad_credentials_are_401(client, header):
    r = client.get("/api/vms", headers={"Authorization": header})
    assert r.status_code == 401


def test_a_token_differing_in_one_character_is_refused(client, tokens):
    token = tokens["admin"]
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert client.get("/api/me", headers=auth(token)).status_code == 200
    assert client.get("/api/me", headers=auth(flipped)).status_code == 401


def test_tokens_are_stored_as_argon2_hashes_only(client, estate, tokens):
    path = Path(estate.db_url.removeprefix("sqlite:///"))
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT name, token_id, token_hash FROM users").fetchall()
    assert {r[0] for r in rows} == set(tokens)
    for name, token_id, token_hash in rows:
        assert token_hash.startswith("$argon2id$")
        assert tokens[name] not in token_hash
        assert tokens[name][4:16] == token_id  # the lookup id is the token's prefix only
    raw = b"".join(p.read_bytes() for p in path.parent.glob("vmwarden.db*"))
    for token in tokens.values():
        assert token.encode() not in raw


def test_disabled_user_is_refused_and_rotation_replaces_the_token(client, users, tokens):
    assert users["operator"].get("/api/me").status_code == 200
    r = users["admin"].post("/api/users/operator/disable", json={"reason": "left the team"})
    assert r.status_code == 200 and r.json()["disabled"] is True
    assert users["operator"].get("/api/me").status_code == 401
    assert users["operator"].get("/api/vms").status_code == 401

    rotated = users["admin"].post("/api/users/operator/rotate", json={"reason": "came back"})
    assert rotated.status_code == 200
    new = rotated.json()["token"]
    assert new.startswith("vmw_") and new != tokens["operator"]
    assert client.get("/api/me", headers=auth(new)).json()["name"] == "operator"
    assert users["operator"].get("/api/me").status_code == 401  # the old token stays dead


def test_user_management_over_the_api(client, users):
    r = users["admin"].post("/api/users", json={"name": "dora", "role": "operator"})
    assert r.status_code == 201
    token = r.json()["token"]
    assert client.get("/api/me", headers=auth(token)).json()["role"] == "operator"
    again = users["admin"].post("/api/users", json={"name": "dora", "role": "operator"})
    assert again.status_code == 409
    bad = users["admin"].post("/api/users", json={"name": "eve", "role": "root"})
    assert bad.status_code == 422
    assert users["admin"].post("/api/users/nobody/disable", json={}).status_code == 404
    names = {u["name"] for u in users["admin"].get("/api/users").json()}
    assert {"dora", "admin", "auditor"} <= names
    assert all("token" not in u for u in users["admin"].get("/api/users").json())


def test_authenticate_token_refuses_disabled_and_unknown(client, tokens):
    store = client.app.state.vmwarden.store
    assert authenticate_token(store, tokens["auditor"]).name == "auditor"
    assert authenticate_token(store, "vmw_" + "x" * 43) is None
    assert authenticate_token(store, "") is None


# -- the session interface the dashboard uses ---------------------------------------------


@pytest.fixture
def web_client(settings, tokens):
    """The app plus a minimal login route, as the web layer would write it."""
    app = create_app(settings)

    @app.post("/test-login")
    async def test_login(request: Request) -> dict[str, str]:
        form = await request.json()
        user = authenticate_token(request.app.state.vmwarden.store, form["token"])
        if user is None:
            return {"csrf": ""}
        return {"csrf": login_session(request, user)}

    with TestClient(app) as c:
        yield c


def test_session_reads_and_csrf_guarded_writes(web_client, tokens):
    c = web_client
    assert c.post("/test-login", json={"token": "vmw_wrong"}).json() == {"csrf": ""}
    csrf = c.post("/test-login", json={"token": tokens["operator"]}).json()["csrf"]
    cookie = c.cookies.get("vmwarden_session")
    assert cookie and tokens["operator"] not in cookie
    assert c.get("/api/me").json()["name"] == "operator"

    url = f"/api/vms/{OFF_VM}/quarantine"
    assert c.post(url, json={"reason": "x"}).status_code == 403  # no CSRF header
    assert c.post(url, json={"reason": "x"}, headers={CSRF_HEADER: "forged"}).status_code == 403
    ok = c.post(url, json={"reason": "from the dashboard"}, headers={CSRF_HEADER: csrf})
    assert ok.status_code == 200, ok.text
    assert ok.json()["actor"] == "operator"

    # rotating the token ends the session
    r = c.post("/api/users/operator/rotate", json={}, headers=auth(tokens["admin"]))
    assert r.status_code == 200
    assert c.get("/api/me").status_code == 401


def test_set_cookie_is_httponly_and_samesite(web_client, tokens):
    r = web_client.post("/test-login", json={"token": tokens["auditor"]})
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie

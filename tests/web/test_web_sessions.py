"""The dashboard's Sessions page: admins only (linked from their nav), every live session
with its source, and an end form (CSRF, reason) after which that browser is signed out at
once and the audit log says who ended whose session and why. Real app, real SQLite."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from vmwarden.api import Settings, create_app
from vmwarden.api.tokens import mint
from vmwarden.store import Store
from vmwarden.store.users import UsersRepo

PEOPLE = {"ada": "admin", "olga": "operator", "artur": "auditor"}
ROW = re.compile(r'<form method="post" action="/sessions/([0-9a-f]{16})/end"[^>]*data-user="(\w+)"')


@pytest.fixture
def app(tmp_path: Path):
    db_url = f"sqlite:///{tmp_path / 'sessions.db'}"
    tokens = {}
    with Store.open(db_url) as store:
        for name, role in PEOPLE.items():
            token, tid, token_hash = mint()
            UsersRepo(store).add_user(name, role, tid, token_hash, actor="ci")
            tokens[name] = token
    app = create_app(Settings(db_url=db_url, web=True))
    app.state.tokens = tokens
    with TestClient(app):
        yield app


def csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def signed_in(app, name: str) -> TestClient:
    c = TestClient(app, follow_redirects=False)
    form = c.get("/login")
    r = c.post("/login", data={"token": app.state.tokens[name], "csrf_token": csrf(form.text)})
    assert r.status_code == 303, r.text
    return c


def test_every_role_reads_the_page_only_admins_get_end_forms(app):
    """#10.11: auditors review who is signed in from where (the page was admin-only); only
    admins end sessions, and a forged end post from a lower role ends nothing."""
    ada, olga, artur = (signed_in(app, n) for n in ("ada", "olga", "artur"))
    page = ada.get("/sessions")
    assert 'href="/sessions"' in ada.get("/").text
    assert page.status_code == 200
    listed = ROW.findall(page.text)
    assert sorted(user for _, user in listed) == ["ada", "artur", "olga"]
    assert "this one" in page.text and "testclient" in page.text
    for c in (olga, artur):
        assert 'href="/sessions"' in c.get("/").text
        page = c.get("/sessions")
        assert page.status_code == 200
        assert ROW.findall(page.text) == [] and "<th>End</th>" not in page.text
        for name in PEOPLE:
            assert f"<td>{name}</td>" in page.text
        assert "testclient" in page.text and "this one" in page.text
    # a forged post from a lower role is refused, and ends nothing
    (olga_id,) = [sid for sid, user in listed if user == "olga"]
    forged = artur.post(
        f"/sessions/{olga_id}/end", data={"reason": "x", "csrf_token": csrf(artur.get("/").text)}
    )
    assert forged.status_code == 403
    assert olga.get("/").status_code == 200


def test_an_admin_ends_a_session_and_that_browser_is_signed_out(app):
    ada, olga = signed_in(app, "ada"), signed_in(app, "olga")
    (olga_id,) = [sid for sid, user in ROW.findall(ada.get("/sessions").text) if user == "olga"]
    url = f"/sessions/{olga_id}/end"
    assert ada.post(url, data={"reason": "IR-31"}).status_code == 403  # no CSRF token
    token = csrf(ada.get("/sessions").text)
    no_reason = ada.post(url, data={"reason": " ", "csrf_token": token}, follow_redirects=True)
    assert "needs a reason" in no_reason.text
    assert olga.get("/").status_code == 200  # still signed in

    done = ada.post(url, data={"reason": "IR-31 stolen laptop", "csrf_token": token})
    assert done.status_code == 303 and done.headers["location"] == "/sessions"
    after = ada.get("/sessions").text
    assert f"Ended session {olga_id} of olga" in after
    assert olga_id not in {sid for sid, _ in ROW.findall(after)}
    assert olga.get("/").headers["location"] == "/login"  # at once
    again = ada.post(url, data={"reason": "twice", "csrf_token": token}, follow_redirects=True)
    assert "no live session" in again.text

    log = signed_in(app, "artur").get("/audit", params={"action": "session-end"}).text
    assert log.count("IR-31 stolen laptop") == 1 and "<td>ada</td>" in log
    assert "user=olga" in log

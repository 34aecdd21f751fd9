"""The dashboard over HTTP (no browser): sign-in, cookie, CSRF, roles, headers, escaping."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.web.conftest import _free_port
from vmwarden.api import Settings, create_app
from vmwarden.api.tokens import mint
from vmwarden.model import VM, Nic, State
from vmwarden.store import Store
from vmwarden.store.users import UsersRepo
from vmwarden.web import charts

PAGES = ["/", "/vms", "/vms?q=web&flag=findings", "/findings", "/images", "/quarantine", "/audit"]
EVIL = "<script>alert(1)</script>"


@pytest.fixture
def app_and_tokens(tmp_path: Path):
    db_url = f"sqlite:///{tmp_path / 'w.db'}"
    tokens = {}
    with Store.open(db_url) as store:
        vm = VM(
            id="11111111-2222-3333-4444-555555555555",
            name=EVIL,
            host="h1",
            uri="test:///nowhere.xml",
            state=State.RUNNING,
            nics=[Nic(mac="52:54:00:00:00:01", type="network", network="prod")],
        )
        store.record_inventory([vm], now=datetime.now(UTC), complete_hosts={"h1"})
        for role in ("auditor", "operator"):
            token, tid, th = mint()
            UsersRepo(store).add_user(f"u-{role}", role, tid, th, actor="ci")
            tokens[role] = token
    return create_app(Settings(db_url=db_url)), tokens


def csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def sign_in(client: TestClient, token: str) -> httpx.Response:
    form = client.get("/login")
    return client.post(
        "/login", data={"token": token, "csrf_token": csrf(form.text)}, follow_redirects=False
    )


def test_pages_need_a_session(app_and_tokens):
    app, _ = app_and_tokens
    with TestClient(app) as client:
        for path in PAGES:
            resp = client.get(path, follow_redirects=False)
            assert resp.status_code == 303 and resp.headers["location"] == "/login", path


def test_sign_in_sets_a_safe_cookie_and_keeps_the_token_out_of_urls(app_and_tokens):
    app, tokens = app_and_tokens
    with TestClient(app) as client:
        resp = sign_in(client, tokens["auditor"])
        assert resp.status_code == 303 and resp.headers["location"] == "/"
        cookie = resp.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie
        assert tokens["auditor"] not in resp.headers["set-cookie"]
        for path in PAGES:
            page = client.get(path)
            assert page.status_code == 200, path
            assert tokens["auditor"] not in page.text
            assert "default-src 'none'" in page.headers["content-security-policy"]
            assert page.headers["cache-control"] == "no-store"
            assert EVIL not in page.text  # the VM's hostile name is escaped everywhere


def test_sign_in_refuses_a_bad_token_and_a_missing_csrf_token(app_and_tokens):
    app, tokens = app_and_tokens
    with TestClient(app) as client:
        assert sign_in(client, "vmw_" + "x" * 43).status_code == 401
        client.get("/login")
        no_csrf = client.post("/login", data={"token": tokens["operator"]})
        assert no_csrf.status_code == 403
        assert client.get("/", follow_redirects=False).status_code == 303


def test_auditor_release_is_refused_and_operator_needs_a_reason(app_and_tokens):
    app, tokens = app_and_tokens
    vm_id = "11111111-2222-3333-4444-555555555555"
    with TestClient(app) as client:
        sign_in(client, tokens["auditor"])
        page = client.get("/quarantine")
        assert 'class="release"' not in page.text
        resp = client.post(
            f"/quarantine/{vm_id}/release", data={"reason": "x", "csrf_token": csrf(page.text)}
        )
        assert resp.status_code == 403
    with TestClient(app) as client:
        sign_in(client, tokens["operator"])
        token = csrf(client.get("/quarantine").text)
        resp = client.post(
            f"/quarantine/{vm_id}/release", data={"reason": " ", "csrf_token": token}
        )
        assert resp.status_code == 200 and "needs a reason" in resp.text
        resp = client.post(
            f"/quarantine/{vm_id}/release", data={"reason": "ok", "csrf_token": token}
        )
        assert "not quarantined" in resp.text  # refused by enforcement, said on the page


def test_logout_needs_csrf_and_ends_the_session(app_and_tokens):
    app, tokens = app_and_tokens
    with TestClient(app) as client:
        sign_in(client, tokens["operator"])
        assert client.post("/logout", data={}).status_code == 403
        assert client.get("/", follow_redirects=False).status_code == 200
        token = csrf(client.get("/").text)
        assert (
            client.post("/logout", data={"csrf_token": token}, follow_redirects=False).status_code
            == 303
        )
        assert client.get("/", follow_redirects=False).status_code == 303


def test_charts_escape_labels_and_say_when_empty():
    svg = charts.bars("t", [EVIL], [3])
    assert EVIL not in svg and "&lt;script&gt;" in svg
    assert "Nothing to show" in charts.bars("t", ["a"], [0])
    assert "No scans" in charts.lines("t", [], [])


@pytest.mark.slow
def test_demo_serve_prints_a_token_that_signs_in(tmp_path: Path):
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vmwarden.cli.main",
            "demo",
            "--workdir",
            str(tmp_path / "d"),
            "--enforce",
            "--serve",
            "--listen",
            f"127.0.0.1:{port}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        token = None
        deadline = time.monotonic() + 120
        while token is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith("vmw_"):
                token = line.strip()
        assert token, "demo --serve printed no token"
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, follow_redirects=True) as client:
            for _ in range(100):
                try:
                    form = client.get("/login")
                    break
                except httpx.ConnectError:
                    time.sleep(0.1)
            resp = client.post("/login", data={"token": token, "csrf_token": csrf(form.text)})
            assert resp.status_code == 200 and "Estate overview" in resp.text
            queue = client.get("/quarantine")
            assert 'class="release"' in queue.text  # admin may release; --enforce filled it
    finally:
        proc.terminate()
        proc.wait(timeout=20)

"""#11.7 on the dashboard: an admin's second account (made by them over the API) cannot approve
their exception from the Exceptions page either -- the page's form posts to the same store
check as the API, which refuses it with the reason and journals the attempt."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient

from vmwarden.api import Settings, create_app
from vmwarden.api.tokens import mint
from vmwarden.store import Store
from vmwarden.store.exceptions import ExceptionsRepo
from vmwarden.store.users import UsersRepo


def _csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def _signed_in(app, token: str) -> TestClient:
    c = TestClient(app, follow_redirects=False)
    r = c.post("/login", data={"token": token, "csrf_token": _csrf(c.get("/login").text)})
    assert r.status_code == 303, r.text
    return c


def test_a_second_account_of_the_requester_is_refused_on_the_page(tmp_path: Path):
    db_url = f"sqlite:///{tmp_path / 'two.db'}"
    tokens = {}
    with Store.open(db_url) as store:
        for name in ("ada", "bea"):
            token, tid, token_hash = mint()
            UsersRepo(store).add_user(name, "admin", tid, token_hash, actor="root")
            tokens[name] = token
    app = create_app(Settings(db_url=db_url, web=True))
    with TestClient(app) as api:
        made = api.post(
            "/api/users", json={"name": "ada2", "role": "admin"},
            headers={"Authorization": f"Bearer {tokens['ada']}"},
        )  # fmt: skip
        assert made.status_code == 201
        store = app.state.vmwarden.store
        until = datetime.now(UTC) + timedelta(days=3)
        ex = ExceptionsRepo(store).request_exception(
            "dormant", "6f1e4c1a-0000-4000-8000-0000000000aa", "old-cms", until, "legal hold",
            actor="ada",
        )  # fmt: skip

        sock = _signed_in(app, made.json()["token"])
        url = f"/exceptions/{ex['id']}/approve"
        form = {"reason": "looks fine", "csrf_token": _csrf(sock.get("/exceptions").text)}
        refused = sock.post(url, data=form)
        assert refused.status_code == 403
        assert "issued by ada" in refused.text and "another person" in refused.text
        assert ExceptionsRepo(store).get_exception(ex["id"])["status"] == "requested"
        audit = sock.get("/api/audit", params={"action": "exception-decide-refused"}).json()
        assert [(e["actor"], e["changes"]["requested_by"]) for e in audit["items"]] == [
            ("ada2", "ada")
        ]

        bea = _signed_in(app, tokens["bea"])
        form = {"reason": "risk accepted", "csrf_token": _csrf(bea.get("/exceptions").text)}
        assert bea.post(url, data=form).status_code == 303
        assert ExceptionsRepo(store).get_exception(ex["id"])["status"] == "approved"

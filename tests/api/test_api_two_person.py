"""#11.7: the two-person rule is about people, not account names.

An admin who can create accounts (or rotate their tokens, which hands them the new token) can
make a second admin and approve their own exception with it. The store refuses a decider the
requester created or minted a token for (directly or through such accounts), or one created
after the request; every refusal is journaled. All over HTTP, with real users and tokens.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient

from tests.api.conftest import RUN_VM, As
from vmwarden.api.tokens import mint
from vmwarden.store import Store
from vmwarden.store.users import UsersRepo


def _until() -> str:
    return (datetime.now(UTC) + timedelta(days=7)).isoformat()


def _request(who: As) -> dict[str, Any]:
    body = {"rule": "unregistered-vm", "vm": RUN_VM, "until": _until(), "reason": "vendor fix"}
    r = who.post("/api/exceptions", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def _add(client: TestClient, by: As, name: str, role: str = "admin") -> As:
    r = by.post("/api/users", json={"name": name, "role": role, "reason": "second pair of eyes"})
    assert r.status_code == 201, r.text
    return As(client, r.json()["token"])


def _approve(who: As, ex: dict[str, Any]) -> Any:
    return who.post(f"/api/exceptions/{ex['id']}/approve", json={"reason": "risk accepted"})


def _status(users: dict[str, As], ex: dict[str, Any]) -> str:
    return users["auditor"].get(f"/api/exceptions/{ex['id']}").json()["status"]


def _audit(users: dict[str, As], action: str) -> list[dict[str, Any]]:
    r = users["auditor"].get("/api/audit", params={"action": action, "limit": 100})
    return r.json()["items"]


def test_an_admin_cannot_approve_their_own_request_with_an_account_they_made(client, users):
    sock = _add(client, users["admin"], "sock")  # made before the request
    ex = _request(users["admin"])
    refused = _approve(sock, ex)
    assert refused.status_code == 403, refused.text
    assert "issued by admin" in refused.json()["detail"]
    assert _status(users, ex) == "requested"
    (event,) = _audit(users, "exception-decide-refused")
    assert event["actor"] == "sock" and "issued by admin" in event["reason"]
    assert event["changes"]["requested_by"] == "admin"
    (added,) = [e for e in _audit(users, "user-add") if e["changes"]["user"] == "sock"]
    assert (added["actor"], added["changes"]["created_by"]) == ("admin", "admin")

    ok = _approve(users["admin2"], ex)  # made by someone else: another person
    assert ok.status_code == 200, ok.text
    (approved,) = _audit(users, "exception-approve")
    assert approved["changes"]["decider_created_by"] == "setup"


def test_nor_through_an_account_made_by_an_account_they_made(client, users):
    first = _add(client, users["admin"], "sock1")
    sock2 = _add(client, first, "sock2")
    ex = _request(users["admin"])
    assert _approve(sock2, ex).status_code == 403
    assert _status(users, ex) == "requested"


def test_nor_with_an_account_created_after_the_request(client, users):
    ex = _request(users["admin"])
    late = _add(client, users["admin2"], "late")  # by someone else, but after the request
    refused = _approve(late, ex)
    assert refused.status_code == 403 and "after the request" in refused.json()["detail"]
    assert _status(users, ex) == "requested"


def test_nor_with_an_account_whose_token_they_rotated(client, users, estate):
    """Rotating another admin's token hands the rotator that token: it is theirs now, and
    rotating it again with itself launders nothing."""
    taken = users["admin"].post("/api/users/admin2/rotate", json={"reason": "routine"})
    assert taken.status_code == 200
    ex = _request(users["admin"])
    refused = _approve(As(client, taken.json()["token"]), ex)
    assert refused.status_code == 403 and "issued by admin" in refused.json()["detail"]
    again = As(client, taken.json()["token"]).post("/api/users/admin2/rotate", json={})
    assert again.json()["user"]["token_issued_by"] == "admin"
    assert _approve(As(client, again.json()["token"]), ex).status_code == 403

    # a token admin2 gets on the server (vmwarden user rotate) is admin2's alone again
    token, tid, token_hash = mint()
    with Store.open(estate.db_url) as store:
        UsersRepo(store).rotate_token("admin2", tid, token_hash, actor="root")
    assert _approve(As(client, token), ex).status_code == 200


def test_an_operator_request_is_decided_by_the_admin_who_made_the_operator(client, users):
    """The rule looks one way: an admin who onboarded an operator may still decide the
    operator's requests (else a one-admin site could decide nothing)."""
    olga = _add(client, users["admin"], "olga", role="operator")
    ex = _request(olga)
    assert _approve(users["admin"], ex).status_code == 200

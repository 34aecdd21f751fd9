"""``vmwarden user`` through the real CLI: the last enabled admin is kept, disabling or
rotating ends the user's dashboard sessions in the store, and sessions are listed and ended
one by one (journaled with the reason)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from vmwarden.store import Store
from vmwarden.store.session_admin import public_id
from vmwarden.store.sessions import SessionsRepo
from vmwarden.store.users import UsersRepo


def _sql(db_url: str, query: str) -> list[tuple]:
    with sqlite3.connect(Path(db_url.removeprefix("sqlite:///"))) as conn:
        return conn.execute(query).fetchall()


def test_disabling_the_last_enabled_admin_is_refused(cli, db_url):
    assert cli("user", "add", "ada", "--role", "admin").code == 0
    assert cli("user", "add", "olga", "--role", "operator").code == 0
    ran = cli("user", "disable", "ada", "--reason", "by mistake")
    assert ran.code == 1
    assert "last enabled admin" in ran.err and "vmwarden user add" in ran.err
    assert "ada\tadmin\tenabled" in cli("user", "list").out

    assert cli("user", "add", "bea", "--role", "admin").code == 0
    assert cli("user", "disable", "ada").code == 0  # bea remains
    assert cli("user", "disable", "bea").code == 1
    assert cli("user", "disable", "olga").code == 0  # not an admin: no such limit
    listed = cli("user", "list").out
    assert "ada\tadmin\tdisabled" in listed and "bea\tadmin\tenabled" in listed


def test_disable_and_rotate_end_the_users_sessions(cli, db_url):
    assert cli("user", "add", "ada", "--role", "admin").code == 0
    assert cli("user", "add", "olga", "--role", "operator").code == 0
    with Store.open(db_url) as store:
        users = UsersRepo(store)
        ada, olga = users.get_user("ada"), users.get_user("olga")
        for n, user in enumerate((ada, olga, olga)):
            SessionsRepo(store).create(f"{n:064x}", user.id, source="127.0.0.1")
    assert cli("user", "rotate", "olga").code == 0
    assert _sql(db_url, "SELECT user_id FROM login_sessions") == [(ada.id,)]
    with Store.open(db_url) as store:
        SessionsRepo(store).create("f" * 64, olga.id)
    assert cli("user", "disable", "olga", "--reason", "left").code == 0
    assert _sql(db_url, "SELECT user_id FROM login_sessions") == [(ada.id,)]
    (changes,) = _sql(db_url, "SELECT changes FROM journal WHERE action = 'user-disable'")[0]
    assert '"sessions_ended": 1' in changes


def _sessions(db_url: str, at: datetime | None = None) -> dict[str, str]:
    """Session rows, as sign-in makes them (at ``at``): a label -> its public id."""
    made = {}
    with Store.open(db_url) as store:
        users = UsersRepo(store)
        for label, name in (("olga-laptop", "olga"), ("olga-phone", "olga"), ("ada", "ada")):
            sid_hash = hashlib.sha256(label.encode()).hexdigest()
            user_id = users.get_user(name).id
            SessionsRepo(store).create(sid_hash, user_id, source="192.0.2.7", now=at)
            made[label] = public_id(sid_hash)
    return made


def test_sessions_are_listed_and_one_is_ended_with_a_reason(cli, db_url):
    assert cli("user", "add", "ada", "--role", "admin").code == 0
    assert cli("user", "add", "olga", "--role", "operator").code == 0
    ids = _sessions(db_url)

    table = cli("user", "sessions").out.splitlines()
    assert len(table) == 3
    row = next(line.split("\t") for line in table if line.startswith(ids["ada"]))
    assert row[1:3] == ["ada", "admin"] and row[-1] == "192.0.2.7" and len(row) == 7
    listed = cli("user", "sessions", "olga", "--format", "json").json()
    assert {s["id"] for s in listed} == {ids["olga-laptop"], ids["olga-phone"]}
    assert all(s["user"] == "olga" and s["expires_at"] > s["created_at"] for s in listed)

    assert cli("user", "end-session", ids["olga-laptop"]).code == 2  # --reason is required
    assert cli("user", "end-session", "nonsense", "--reason", "x").code == 2
    ran = cli("user", "end-session", ids["olga-laptop"], "--reason", "IR-12", "--actor", "ada")
    assert ran.code == 0 and "olga" in ran.out
    left = {s["id"] for s in cli("user", "sessions", "--format", "json").json()}
    assert left == {ids["olga-phone"], ids["ada"]}
    again = cli("user", "end-session", ids["olga-laptop"], "--reason", "IR-12")
    assert again.code == 1 and "no live session" in again.err
    ((actor, reason, changes),) = _sql(
        db_url, "SELECT actor, reason, changes FROM journal WHERE action = 'session-end'"
    )
    assert actor == "ada" and reason == "IR-12"
    assert json.loads(changes)["user"] == "olga"
    assert json.loads(changes)["session"] == ids["olga-laptop"]


def test_sessions_past_the_given_limits_are_not_listed(cli, db_url):
    assert cli("user", "add", "ada", "--role", "admin").code == 0
    assert cli("user", "add", "olga", "--role", "operator").code == 0
    ids = _sessions(db_url, at=datetime.now(UTC) - timedelta(hours=1))
    assert cli("user", "sessions").out == ""  # 1 h idle > 30 min
    listed = cli("user", "sessions", "--session-idle", "2h", "--format", "json").json()
    assert {s["id"] for s in listed} == set(ids.values())
    assert cli("user", "sessions", "--session-max", "50m", "--session-idle", "2h").code == 2
    assert cli("user", "sessions", "--session-idle", "1m").code == 2

"""``vmwarden user`` through the real CLI: the last enabled admin is kept, and disabling or
rotating ends the user's dashboard sessions in the store."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from vmwarden.store import Store
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

"""Sign-in sessions and throttling in the store: limits by age and idle time, windows, the
doubling block, resets, and the last-admin guard (real SQLite, and PostgreSQL when
``VMWARDEN_TEST_PG_URL`` names a scratch database; explicit clock)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest

from tests.store.store_builders import fresh_pg_store
from vmwarden.store import Store
from vmwarden.store.pages import JournalQuery, Pages
from vmwarden.store.sessions import (
    LastAdminError,
    SessionsRepo,
    ThrottleRepo,
    ThrottleRule,
    disable_user,
)
from vmwarden.store.users import UsersRepo

AGE, IDLE = timedelta(hours=8), timedelta(minutes=30)
RULE = ThrottleRule(
    limit=3, window=timedelta(minutes=10), base=timedelta(seconds=30), cap=timedelta(minutes=4)
)
ADDR = ("address", "192.0.2.7")
PG_URL = os.environ.get("VMWARDEN_TEST_PG_URL")


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, db_path) -> Iterator[Store]:
    """The layer's SQLite store, and a fresh PostgreSQL one when a scratch database is named."""
    if request.param == "sqlite":
        with Store.open(f"sqlite:///{db_path}") as opened:
            yield opened
        return
    if not PG_URL:
        pytest.skip("set VMWARDEN_TEST_PG_URL to test PostgreSQL")
    with fresh_pg_store(PG_URL) as opened:
        yield opened


def at(t0: datetime, seconds: int) -> datetime:
    return t0 + timedelta(seconds=seconds)


def _user(store: Store, name: str, role: str = "operator") -> int:
    return UsersRepo(store).add_user(name, role, f"tid-{name}", "hash", actor="t").id


def test_block_for_doubles_from_the_limit_up_to_the_cap():
    got = [RULE.block_for(n) for n in range(1, 9)]
    secs = [None, None, 30, 60, 120, 240, 240, 240]
    assert got == [timedelta(seconds=s) if s else None for s in secs]
    assert RULE.block_for(10**6) == RULE.cap  # no overflow for a long attack


def test_touch_refuses_and_deletes_a_session_past_either_limit(store: Store, t0):
    repo = SessionsRepo(store)
    uid = _user(store, "olga")
    repo.create("a" * 64, uid, now=t0)
    repo.create("b" * 64, uid, now=t0)
    assert repo.touch("a" * 64, max_age=AGE, idle=IDLE, now=at(t0, 29 * 60)).user_id == uid
    assert repo.touch("a" * 64, max_age=AGE, idle=IDLE, now=at(t0, 58 * 60)) is not None
    assert repo.touch("b" * 64, max_age=AGE, idle=IDLE, now=at(t0, 30 * 60)) is None  # idle
    assert repo.count(uid) == 1
    for minute in range(60, 8 * 60, 25):  # used all day, still ends at 8 h
        assert repo.touch("a" * 64, max_age=AGE, idle=IDLE, now=at(t0, minute * 60))
    assert repo.touch("a" * 64, max_age=AGE, idle=IDLE, now=at(t0, 8 * 3600)) is None
    assert repo.count(uid) == 0


def test_purge_expired_keeps_live_sessions(store: Store, t0):
    repo = SessionsRepo(store)
    uid = _user(store, "olga")
    repo.create("a" * 64, uid, now=t0)
    repo.create("b" * 64, uid, now=at(t0, 20 * 60))
    assert repo.purge_expired(max_age=AGE, idle=IDLE, now=at(t0, 40 * 60)) == 1
    assert repo.touch("b" * 64, max_age=AGE, idle=IDLE, now=at(t0, 40 * 60)) is not None


def test_failures_below_the_limit_expire_with_their_window(store: Store, t0):
    repo = ThrottleRepo(store, RULE)
    details = {"source": ADDR[1]}
    for s in (0, 60):
        assert repo.fail([ADDR], actor="anonymous", details=details, now=at(t0, s)) is None
    # the window (10 min) has passed: counting starts again, no block at the third failure
    assert repo.fail([ADDR], actor="anonymous", details=details, now=at(t0, 11 * 60)) is None
    assert repo.state([ADDR], now=at(t0, 11 * 60)).failures == 1
    repo.fail([ADDR], actor="anonymous", details=details, now=at(t0, 11 * 60 + 1))
    until = repo.fail([ADDR], actor="anonymous", details=details, now=at(t0, 11 * 60 + 2))
    assert until == at(t0, 11 * 60 + 32)
    assert repo.state([ADDR], now=at(t0, 11 * 60 + 31)).blocked_until == until
    assert repo.state([ADDR], now=at(t0, 11 * 60 + 32)).blocked_until is None  # served


def test_a_failure_journals_each_subject_once(store: Store, t0):
    repo = ThrottleRepo(store, RULE)
    subjects = [ADDR, ("account", "olga")]
    repo.fail(subjects, actor="olga", details={"why": "wrong token"}, now=t0)
    assert repo.state(subjects, now=t0).failures == 2  # one per subject
    events, total = Pages(store).journal(JournalQuery(action="login-failed"), limit=5, offset=0)
    assert total == 1 and events[0].actor == "olga"


def test_the_last_enabled_admin_stays(store: Store):
    ada = _user(store, "ada", "admin")
    _user(store, "bea", "admin")
    SessionsRepo(store).create("c" * 64, ada)
    assert disable_user(store, "ada", actor="bea").disabled
    assert SessionsRepo(store).count(ada) == 0
    with pytest.raises(LastAdminError, match="last enabled admin"):
        disable_user(store, "bea", actor="bea")
    assert disable_user(store, "ada", actor="bea").disabled  # already disabled: no-op
    assert not UsersRepo(store).get_user("bea").disabled


def _disable_at_once(store: Store, names: list[str]) -> list[str]:
    """Disable each of ``names`` from its own thread, released together; each outcome."""
    barrier = threading.Barrier(len(names))
    outcomes: list[str] = []

    def disable(name: str) -> None:
        barrier.wait()
        try:
            disable_user(store, name, actor="t")
            outcomes.append("done")
        except LastAdminError:
            outcomes.append("refused")

    threads = [threading.Thread(target=disable, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return sorted(outcomes)


def test_two_admins_disabling_each_other_at_once_leave_one(store: Store):
    for round_no in range(8):
        pair = [f"a{round_no}", f"b{round_no}"]
        for name in pair:
            _user(store, name, "admin")
        for user in UsersRepo(store).list_users():  # only this round's pair stays enabled
            if user.name not in pair and not user.disabled:
                disable_user(store, user.name, actor="t")
        assert _disable_at_once(store, pair) == ["done", "refused"], round_no
        admins = [u for u in UsersRepo(store).list_users() if u.role == "admin" and not u.disabled]
        assert len(admins) == 1

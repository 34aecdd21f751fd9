"""Sign-in hardening over real HTTP (uvicorn on loopback, real SQLite): server-side sessions
a copied cookie cannot outlive, idle and age limits, failed sign-ins throttled per address
and per account (429 + Retry-After, surviving a restart, audited without the secret), the
last admin kept, and /api/health's 503."""

from __future__ import annotations

import base64
import json
import re
import sqlite3
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from itsdangerous import TimestampSigner

from tests.web.conftest import serve_app
from vmwarden.api import Settings, create_app
from vmwarden.api.tokens import DUMMY_HASH, mint, needs_rehash, verify
from vmwarden.store import Store
from vmwarden.store.sessions import ThrottleRule
from vmwarden.store.users import UsersRepo

PEOPLE = {"ada": "admin", "olga": "operator", "artur": "auditor"}
RULE = ThrottleRule(limit=3, window=timedelta(minutes=15), base=timedelta(seconds=60))
COOKIE = "vmwarden_session"


@dataclass
class Site:
    db: Path
    settings: Settings
    tokens: dict[str, str]

    def sql(self, query: str, *args: object) -> list[tuple]:
        with sqlite3.connect(self.db) as conn:
            return conn.execute(query, args).fetchall()


@pytest.fixture
def site(tmp_path: Path) -> Site:
    db = tmp_path / "signin.db"
    tokens = {}
    with Store.open(f"sqlite:///{db}") as store:
        for name, role in PEOPLE.items():
            token, tid, token_hash = mint()
            UsersRepo(store).add_user(name, role, tid, token_hash, actor="ci")
            tokens[name] = token
    settings = Settings(db_url=f"sqlite:///{db}", web=True, throttle=RULE)
    return Site(db, settings, tokens)


@contextmanager
def serving(site: Site) -> Iterator[str]:
    with serve_app(create_app(site.settings)) as base:
        yield base


def client(base: str, source: str = "127.0.0.1") -> httpx.Client:
    """A client whose connections come from ``source`` (any 127.x address is loopback)."""
    transport = httpx.HTTPTransport(local_address=source)
    return httpx.Client(base_url=base, transport=transport, follow_redirects=False, timeout=30)


def csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def sign_in(c: httpx.Client, token: str) -> httpx.Response:
    form = c.get("/login")
    return c.post("/login", data={"token": token, "csrf_token": csrf(form.text)})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def flipped(token: str) -> str:
    """The same token id (so the same account), wrong secret."""
    return token[:-1] + ("A" if token[-1] != "A" else "B")


def with_cookie(base: str, cookie: str) -> httpx.Client:
    c = client(base)
    c.cookies.set(COOKIE, cookie)
    return c


# -- sessions ---------------------------------------------------------------------------


def test_a_cookie_copied_before_sign_out_is_refused_after_it(site: Site):
    with serving(site) as base, client(base) as browser:
        assert sign_in(browser, site.tokens["olga"]).status_code == 303
        stolen = browser.cookies[COOKIE]
        assert site.sql("SELECT count(*) FROM login_sessions") == [(1,)]
        with with_cookie(base, stolen) as thief:  # works while the session lives
            assert thief.get("/api/me").json()["name"] == "olga"
            assert thief.get("/").status_code == 200
        token = csrf(browser.get("/").text)
        assert browser.post("/logout", data={"csrf_token": token}).status_code == 303
        assert site.sql("SELECT count(*) FROM login_sessions") == [(0,)]
        with with_cookie(base, stolen) as thief:
            assert thief.get("/api/me").status_code == 401
            assert thief.get("/").headers["location"] == "/login"
            assert thief.post("/logout", data={"csrf_token": token}).status_code == 401


def test_the_store_keeps_only_a_hash_of_the_session_id(site: Site):
    with serving(site) as base, client(base) as browser:
        sign_in(browser, site.tokens["artur"])
        ((sid_hash, user_id, source),) = site.sql(
            "SELECT sid_hash, user_id, source FROM login_sessions"
        )
        assert re.fullmatch(r"[0-9a-f]{64}", sid_hash) and source == "127.0.0.1"
        assert site.sql("SELECT name FROM users WHERE id = ?", user_id) == [("artur",)]
        assert sid_hash not in browser.cookies[COOKIE]


@pytest.mark.parametrize("how", ["disable", "rotate"])
def test_disabling_or_rotating_ends_every_session_of_that_user(site: Site, how: str):
    with serving(site) as base, client(base) as one, client(base) as two, client(base) as other:
        for c, name in ((one, "olga"), (two, "olga"), (other, "artur")):
            assert sign_in(c, site.tokens[name]).status_code == 303
        assert site.sql("SELECT count(*) FROM login_sessions") == [(3,)]
        r = other.post(
            f"/api/users/olga/{how}", json={"reason": how}, headers=bearer(site.tokens["ada"])
        )
        assert r.status_code == 200, r.text
        rows = site.sql("SELECT u.name FROM login_sessions s JOIN users u ON u.id = s.user_id")
        assert rows == [("artur",)]  # olga's two rows are gone, artur's stays
        assert one.get("/api/me").status_code == 401
        assert two.get("/").headers["location"] == "/login"
        assert other.get("/api/me").json()["name"] == "artur"


@pytest.mark.parametrize(
    ("column", "ago"),
    [("last_seen_at", timedelta(minutes=31)), ("created_at", timedelta(hours=8, seconds=1))],
)
def test_a_session_ends_when_idle_or_too_old(site: Site, column: str, ago: timedelta):
    with serving(site) as base, client(base) as browser:
        sign_in(browser, site.tokens["olga"])
        assert browser.get("/api/me").status_code == 200
        past = (datetime.now(UTC) - ago).replace(tzinfo=None).isoformat(sep=" ")
        site.sql(f"UPDATE login_sessions SET {column} = ?", past)
        assert browser.get("/api/me").status_code == 401
        assert site.sql("SELECT count(*) FROM login_sessions") == [(0,)]


def test_use_keeps_a_session_alive_past_the_idle_limit_from_sign_in(site: Site):
    with serving(site) as base, client(base) as browser:
        sign_in(browser, site.tokens["olga"])
        past = (datetime.now(UTC) - timedelta(minutes=20)).replace(tzinfo=None)
        site.sql("UPDATE login_sessions SET last_seen_at = ?", past.isoformat(sep=" "))
        assert browser.get("/api/me").status_code == 200  # 20 min idle: still alive, touched
        ((seen,),) = site.sql("SELECT last_seen_at FROM login_sessions")
        assert datetime.fromisoformat(seen) > past + timedelta(minutes=19)


# -- throttling -------------------------------------------------------------------------


def _journal(site: Site, action: str) -> list[tuple[str, str]]:
    return site.sql("SELECT actor, changes FROM journal WHERE action = ? ORDER BY id", action)


def test_failed_form_sign_ins_are_throttled_audited_and_survive_a_restart(site: Site):
    wrong = [flipped(site.tokens["olga"]), "vmw_" + "q" * 43, "not-a-token"]
    with serving(site) as base, client(base) as browser:
        for token in wrong:
            assert sign_in(browser, token).status_code == 401
        blocked = sign_in(browser, site.tokens["olga"])  # even the right token now
        assert blocked.status_code == 429
        assert 0 < int(blocked.headers["retry-after"]) <= 60
        assert "Too many failed sign-ins" in blocked.text
    failures = _journal(site, "login-failed")
    assert [actor for actor, _ in failures] == ["olga", "anonymous", "anonymous"]
    assert '"via": "form"' in failures[0][1] and '"source": "127.0.0.1"' in failures[0][1]
    assert '"why": "wrong token"' in failures[0][1]
    raw = b"".join(p.read_bytes() for p in site.db.parent.glob("signin.db*"))
    for token in wrong:
        assert token.encode() not in raw  # the submitted secret is never stored

    with serving(site) as base, client(base) as browser:  # a new process, same store
        assert sign_in(browser, site.tokens["olga"]).status_code == 429
        site.sql("UPDATE login_throttle SET blocked_until = NULL")  # the block has passed
        assert sign_in(browser, site.tokens["olga"]).status_code == 303
        # a success clears no count (#11.9): they age out with their window
        counts = site.sql("SELECT scope, failures FROM login_throttle ORDER BY scope")
        assert counts == [("account", 1), ("address", 3)]
        api = browser.get("/api/audit", params={"action": "login-failed"}).json()
        assert api["total"] == 3 and all(i["actor"] in ("olga", "anonymous") for i in api["items"])
        page = browser.get("/audit", params={"action": "login-failed"})
        assert page.status_code == 200 and page.text.count("login-failed") >= 3
        assert not any(token in api.__repr__() + page.text for token in wrong)


def test_bearer_failures_block_the_address_and_the_account_separately(site: Site):
    with serving(site) as base:
        with client(base, "127.0.0.2") as attacker:
            for _ in range(3):
                r = attacker.get("/api/me", headers=bearer(flipped(site.tokens["olga"])))
                assert r.status_code == 401
            r = attacker.get("/api/me", headers=bearer(site.tokens["ada"]))
            assert r.status_code == 429 and int(r.headers["retry-after"]) > 0  # address
            assert r.headers["content-type"] == "application/problem+json"
        with client(base, "127.0.0.3") as elsewhere:
            r = elsewhere.get("/api/me", headers=bearer(site.tokens["olga"]))
            assert r.status_code == 429  # olga's account is blocked from everywhere
            assert elsewhere.get("/api/me", headers=bearer(site.tokens["ada"])).status_code == 200
    scopes = site.sql("SELECT scope, subject, failures FROM login_throttle ORDER BY scope")
    assert scopes == [("account", "olga", 3), ("address", "127.0.0.2", 3)]
    assert all('"via": "bearer"' in c for _, c in _journal(site, "login-failed"))


def test_valid_requests_between_guesses_do_not_reset_the_address(site: Site):
    """#11.9: 40 wrong tokens interleaved with a valid auditor's requests from one address
    used to get 401 forever (each success cleared the address); now the address is blocked
    after the limit, the valid token included."""
    answers = []
    with serving(site) as base, client(base, "127.0.0.5") as c:
        for i in range(40):
            wrong = c.get("/api/me", headers=bearer("vmw_" + f"{i:02d}" + "g" * 41))
            valid = c.get("/api/me", headers=bearer(site.tokens["artur"]))
            answers.append((wrong.status_code, valid.status_code))
    assert answers[: RULE.limit - 1] == [(401, 200)] * (RULE.limit - 1)
    assert answers[RULE.limit - 1] == (401, 429)
    assert set(answers[RULE.limit :]) == {(429, 429)}
    assert site.sql("SELECT failures FROM login_throttle WHERE scope = 'address'") == [(3,)]


def _cookie_payload(cookie: str) -> dict[str, object]:
    """What anyone who sees the cookie reads: Starlette signs it, but does not encrypt it."""
    data = cookie.split(".", maxsplit=1)[0]
    return json.loads(base64.b64decode(data + "=" * (-len(data) % 4)))


def test_the_cookie_holds_an_opaque_session_id_only(site: Site):
    """#11.9: it held the user's id and the first 12 characters of their API token."""
    token = site.tokens["olga"]
    with serving(site) as base, client(base) as browser:
        assert sign_in(browser, token).status_code == 303
        cookie = browser.cookies[COOKIE]
        payload = _cookie_payload(cookie)
        assert list(payload) == ["vmwarden.sid"]
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", payload["vmwarden.sid"])
        for part in (token[4:16], token[4:10], token[-8:]):
            assert part not in json.dumps(payload) and part not in cookie
        # still works: reads, and a CSRF-checked write (the token is derived from the id)
        assert browser.get("/api/me").json()["name"] == "olga"
        form = csrf(browser.get("/").text)
        assert form not in cookie
        assert browser.post("/logout", data={"csrf_token": "x" + form[1:]}).status_code == 403
        assert browser.post("/logout", data={"csrf_token": form}).status_code == 303


def test_a_cookie_of_the_old_layout_is_stripped_to_the_id(site: Site):
    """Cookies issued before the fix carried the user id and token id: the next request
    rewrites the cookie without them (the session itself stays valid)."""
    secret = site.settings.session_secret
    with serving(site) as base, client(base) as browser:
        sign_in(browser, site.tokens["olga"])
        sid = _cookie_payload(browser.cookies[COOKIE])["vmwarden.sid"]
        old = {"vmwarden.user_id": 2, "vmwarden.token_id": site.tokens["olga"][4:16]}
        data = base64.b64encode(json.dumps({**old, "vmwarden.sid": sid}).encode())
        forged = TimestampSigner(secret).sign(data).decode()
        with with_cookie(base, forged) as c:
            r = c.get("/api/me")
            assert r.json()["name"] == "olga"
            rewritten = r.headers["set-cookie"].removeprefix(f"{COOKIE}=").split(";")[0]
            assert list(_cookie_payload(rewritten)) == ["vmwarden.sid"]


def test_a_session_made_before_a_token_rotation_is_refused(site: Site):
    """Rotation deletes the user's sessions; a session row older than the token (a path that
    rotated without deleting them) is refused all the same."""
    with serving(site) as base, client(base) as browser:
        sign_in(browser, site.tokens["olga"])
        later = (datetime.now(UTC) + timedelta(seconds=5)).replace(tzinfo=None)
        site.sql("UPDATE users SET token_rotated_at = ? WHERE name = 'olga'", str(later))
        assert browser.get("/api/me").status_code == 401
        assert site.sql("SELECT count(*) FROM login_sessions") == [(0,)]


def _timed(c: httpx.Client, token: str, times: list[float]) -> None:
    start = time.perf_counter()
    r = c.get("/api/me", headers=bearer(token))
    times.append((time.perf_counter() - start) * 1000)
    assert r.status_code == 401


def test_an_unknown_token_id_takes_as_long_as_a_wrong_secret(tmp_path: Path):
    """#11.9: an unknown id answered in ~6 ms, a known id with a wrong secret in ~34 ms (one
    argon2 check), telling which ids exist. Medians over interleaved requests must be alike."""
    db = tmp_path / "timing.db"
    token, tid, token_hash = mint()
    with Store.open(f"sqlite:///{db}") as store:
        UsersRepo(store).add_user("olga", "operator", tid, token_hash, actor="ci")
    lenient = ThrottleRule(limit=10_000)  # measure the check, not the block
    settings = Settings(db_url=f"sqlite:///{db}", web=False, throttle=lenient)
    known, unknown = [], []
    with serve_app(create_app(settings)) as base, client(base) as c:
        for i in range(30):
            _timed(c, flipped(token), known)
            _timed(c, "vmw_" + f"{i:02d}" + "u" * 41, unknown)
    ratio = statistics.median(known) / statistics.median(unknown)
    assert 0.5 < ratio < 2, (statistics.median(known), statistics.median(unknown))


def test_the_dummy_hash_has_the_parameters_of_real_ones():
    assert not needs_rehash(DUMMY_HASH)
    assert not needs_rehash(mint()[2])
    assert not verify(DUMMY_HASH, "vmw_" + "x" * 43)


def test_each_failure_after_a_block_doubles_it(site: Site):
    with serving(site) as base, client(base, "127.0.0.4") as attacker:
        spans = []
        for _ in range(5):
            site.sql("UPDATE login_throttle SET blocked_until = NULL")  # let it try again
            attacker.get("/api/me", headers=bearer("vmw_" + "z" * 43))
            ((until, last),) = site.sql("SELECT blocked_until, last_failure_at FROM login_throttle")
            if until:
                spans.append(datetime.fromisoformat(until) - datetime.fromisoformat(last))
    assert spans == [timedelta(seconds=s) for s in (60, 120, 240)]


def test_a_session_cookie_is_not_a_sign_in_attempt(site: Site):
    with serving(site) as base, client(base) as browser:
        browser.cookies.set(COOKIE, "forged-cookie-value")
        for _ in range(5):
            assert browser.get("/api/me").status_code == 401
        assert sign_in(browser, site.tokens["artur"]).status_code == 303
    assert site.sql("SELECT count(*) FROM login_throttle") == [(0,)]


# -- the last admin, health -------------------------------------------------------------


def test_the_last_enabled_admin_cannot_be_disabled(site: Site):
    with serving(site) as base, client(base) as c:
        ada = bearer(site.tokens["ada"])
        r = c.post("/api/users/ada/disable", json={"reason": "oops"}, headers=ada)
        assert r.status_code == 409
        assert "last enabled admin" in r.json()["detail"]
        assert c.get("/api/me", headers=ada).json()["disabled"] is False
        added = c.post("/api/users", json={"name": "bea", "role": "admin"}, headers=ada).json()
        assert c.post("/api/users/ada/disable", json={}, headers=ada).status_code == 200
        bea = bearer(added["token"])
        r = c.post("/api/users/bea/disable", json={}, headers=bea)
        assert r.status_code == 409  # now bea is the last one
    assert [a for a, _ in _journal(site, "user-disable")] == ["ada"]


def test_health_is_503_with_the_same_body_when_the_store_is_unreachable(tmp_path: Path):
    (tmp_path / "a-file").write_text("not a directory")
    gone = Settings(db_url=f"sqlite:///{tmp_path / 'a-file' / 'x.db'}", web=False)
    with serve_app(create_app(gone)) as base, client(base) as c:
        r = c.get("/api/health")
        assert r.status_code == 503
        body = r.json()
        assert body["status"] == "degraded" and body["store"] == "unreachable"
    ok = Settings(db_url=f"sqlite:///{tmp_path / 'ok.db'}", web=False)
    with serve_app(create_app(ok)) as base, client(base) as c:
        r = c.get("/api/health")
        assert r.status_code == 200 and set(r.json()) == set(body)
        assert r.json()["status"] == "ok"

"""Sign-in options of ``vmwarden serve`` and ``vmwarden watch``: nonsense is refused before
anything starts (exit 2, the option named), and a real ``vmwarden serve`` process uses what
was given -- the failure limit, and X-Forwarded-For only with ``--trust-proxy`` (uvicorn's
own proxy-header rewriting, which trusts loopback by default, is off)."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from vmwarden.cli.login_options import parse_duration

BAD = [
    (["--login-window", "15"], "--login-window"),  # no unit
    (["--login-window", "fifteen minutes"], "--login-window"),
    (["--session-max", "0s"], "--session-max"),
    (["--session-max", "31d"], "--session-max"),
    (["--session-idle", "1m"], "--session-idle"),  # shorter than a use is recorded
    (["--session-idle", "9h"], "--session-idle"),  # longer than --session-max 8h
    (["--login-max-failures", "0"], "--login-max-failures"),
    (["--login-lockout", "20m"], "--login-lockout"),  # longer than --login-lockout-max 15m
]


@pytest.mark.parametrize("command", ["serve", "watch"])
@pytest.mark.parametrize(
    ("args", "option"), BAD, ids=lambda v: " ".join(v) if isinstance(v, list) else None
)
def test_nonsense_is_refused_with_exit_2(cli, tmp_path, command, args, option):
    base = ["-c", "test:///default", "-p", str(tmp_path / "p.yaml")] if command == "watch" else []
    ran = cli(command, *base, *args)
    assert ran.code == 2, (ran.out, ran.err)
    assert f"Invalid value for {option}" in ran.err or f"Invalid value for '{option}'" in ran.err


def test_durations():
    assert parse_duration("15m").total_seconds() == 900
    assert parse_duration("1h30m").total_seconds() == 5400
    assert parse_duration(" 8H ").total_seconds() == 8 * 3600
    assert parse_duration("30d").days == 30


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(db_url: str, *options: str) -> Iterator[str]:
    """A real ``vmwarden serve`` on a free loopback port; stopped (its pid only) on exit."""
    port = _port()
    env = {**os.environ, "VMWARDEN_DB": db_url}
    argv = ["serve", "--listen", f"127.0.0.1:{port}", "--no-web", *options]
    proc = subprocess.Popen(
        [sys.executable, "-m", "vmwarden.cli.main", *argv],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _failed_sources(db_url: str) -> list[str]:
    path = Path(db_url.removeprefix("sqlite:///"))
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT changes FROM journal WHERE action = 'login-failed' ORDER BY id"
        ).fetchall()
    return [json.loads(changes)["source"] for (changes,) in rows]


@pytest.mark.parametrize("trust", [False, True])
def test_serve_uses_the_limit_and_trusts_x_forwarded_for_only_when_told(cli, db_url, trust):
    assert cli("user", "add", "ada", "--role", "admin").code == 0
    options = ["--login-max-failures", "2", "--login-lockout", "1m"]
    wrong = {"Authorization": "Bearer vmw_" + "A" * 43, "X-Forwarded-For": "203.0.113.9"}
    with serving(db_url, *options, *(["--trust-proxy"] if trust else [])) as base:
        codes = [httpx.get(f"{base}/api/me", headers=wrong).status_code for _ in range(3)]
        other = {**wrong, "X-Forwarded-For": "198.51.100.4"}
        fourth = httpx.get(f"{base}/api/me", headers=other)
    assert codes == [401, 401, 429]
    expected = ["203.0.113.9", "203.0.113.9", "198.51.100.4"] if trust else ["127.0.0.1"] * 2
    assert _failed_sources(db_url) == expected
    # a different forwarded address is another client only behind a trusted proxy
    assert fourth.status_code == (401 if trust else 429)

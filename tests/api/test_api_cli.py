"""``vmwarden user …`` and ``vmwarden serve`` as an operator runs them (real subprocesses)."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest


def vmwarden(*args: str, db: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"VMWARDEN_DB": db, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "vmwarden.cli.main", *args],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip


def test_user_add_prints_the_token_once_and_stores_a_hash(db_url, tmp_path):
    added = vmwarden("user", "add", "alice", "--role", "operator", "--reason", "on call", db=db_url)
    assert added.returncode == 0, added.stderr
    token = added.stdout.strip()
    assert token.startswith("vmw_") and len(token) == 47
    assert "shown once" in added.stderr
    with sqlite3.connect(tmp_path / "vmwarden.db") as db:
        (row,) = db.execute("SELECT name, role, token_hash, disabled FROM users").fetchall()
        audit = db.execute("SELECT action, reason FROM journal").fetchall()
    assert row[0:2] == ("alice", "operator") and row[2].startswith("$argon2id$") and not row[3]
    assert audit == [("user-add", "on call")]

    listed = vmwarden("user", "list", db=db_url)
    assert listed.stdout.startswith("alice\toperator\tenabled\t")
    assert token not in listed.stdout

    again = vmwarden("user", "add", "alice", "--role", "admin", db=db_url)
    assert again.returncode == 1 and "already exists" in again.stderr
    bad = vmwarden("user", "add", "bob", "--role", "root", db=db_url)
    assert bad.returncode == 2 and "auditor, operator, admin" in bad.stderr
    assert vmwarden("user", "disable", "alice", db=db_url).returncode == 0
    assert "disabled" in vmwarden("user", "list", db=db_url).stdout
    rotated = vmwarden("user", "rotate", "alice", db=db_url)
    assert rotated.returncode == 0 and rotated.stdout.strip() != token
    assert "\tenabled\t" in vmwarden("user", "list", db=db_url).stdout
    missing = vmwarden("user", "disable", "nobody", db=db_url)
    assert missing.returncode == 1 and "no user" in missing.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_serve_answers_health_and_refuses_anonymous(db_url):
    token = vmwarden("user", "add", "root1", "--role", "admin", db=db_url).stdout.strip()
    assert vmwarden("user", "list", db=db_url).stdout.rstrip("\n").endswith("\t-")  # never
    port = _free_port()
    env = os.environ | {"VMWARDEN_DB": db_url}
    proc = subprocess.Popen(
        [sys.executable, "-m", "vmwarden.cli.main", "serve", "--listen", f"127.0.0.1:{port}",
         "--no-web"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                health = httpx.get(f"{base}/api/health", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            pytest.fail("serve did not come up")
        assert health.json()["status"] == "ok"
        assert httpx.get(f"{base}/api/vms").status_code == 401
        me = httpx.get(f"{base}/api/me", headers={"Authorization": f"Bearer {token}"})
        assert me.json()["name"] == "root1"
        assert "server" not in me.headers
        # the access review's last sign-in (#10.11), in the API and the CLI
        again = httpx.get(f"{base}/api/me", headers={"Authorization": f"Bearer {token}"})
        signed_in = again.json()["last_sign_in_at"]
        assert signed_in is not None
        last = vmwarden("user", "list", db=db_url).stdout.rstrip("\n").split("\t")[-1]
        assert last[:16] == signed_in[:16]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_serve_refuses_a_bad_listen_address(db_url):
    ran = vmwarden("serve", "--listen", "8080", db=db_url)
    assert ran.returncode == 2 and "HOST:PORT" in ran.stderr


def test_help_has_examples(db_url):
    for args in (["serve"], ["user"], ["user", "add"], ["user", "rotate"]):
        ran = vmwarden(*args, "--help", db=db_url)
        assert "Example:" in ran.stdout, args


def test_db_path_is_not_left_world_readable(db_url, tmp_path):
    vmwarden("user", "add", "carol", "--role", "auditor", db=db_url)
    assert (Path(tmp_path) / "vmwarden.db").stat().st_mode & 0o077 == 0

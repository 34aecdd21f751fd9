"""Migration 0007 (#11.7, #10.11): who minted each user's current token, filled on upgrade
from the journal (the newest user-rotate), else from the creator; last sign-in starts NULL."""

from __future__ import annotations

import json
from pathlib import Path

from alembic import command
from sqlalchemy import text

from vmwarden.store import Store, db
from vmwarden.store.users import UsersRepo

_T = "2026-11-01 10:00:00"


def _at_0006(url: str) -> None:
    engine = db.connect(url)
    cfg = db.alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0006")
        for i, (name, created_by) in enumerate([("ada", "root"), ("bob", "ada"), ("cy", "ada")]):
            conn.execute(
                text(
                    "INSERT INTO users (name, role, token_id, token_hash, disabled, created_by,"
                    " created_at, token_rotated_at) VALUES (:n, 'admin', :t, 'h', 0, :c, :at, :at)"
                ),
                {"n": name, "t": f"tid{i}", "c": created_by, "at": _T},
            )
        rotations = [("ada", "bob"), ("root", "bob"), ("bob", "cy")]  # bob: newest by root
        for actor, user in rotations:
            conn.execute(
                text(
                    "INSERT INTO journal (action, actor, status, changes, created_at, updated_at)"
                    " VALUES ('user-rotate', :a, 'done', :c, :at, :at)"
                ),
                {"a": actor, "c": json.dumps({"user": user}), "at": _T},
            )
    engine.dispose()


def test_upgrade_fills_token_issued_by_from_the_journal(db_path: Path) -> None:
    url = f"sqlite:///{db_path}"
    _at_0006(url)
    with Store.open(url) as store:
        got = {
            u.name: (u.token_issued_by, u.last_sign_in_at) for u in UsersRepo(store).list_users()
        }
    assert got == {"ada": ("root", None), "bob": ("root", None), "cy": ("bob", None)}

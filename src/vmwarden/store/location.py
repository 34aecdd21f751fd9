"""Where the store is and which schema it should have, without importing SQLAlchemy
(``store.reads`` answers ``report`` with these alone; ``store.db`` builds on them)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
ENV_VAR = "VMWARDEN_DB"
BUSY_TIMEOUT_MS = 30_000


def default_url() -> str:
    """``$VMWARDEN_DB``, else an SQLite file in the user data directory."""
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return env
    return f"sqlite:///{Path(platformdirs.user_data_dir('vmwarden')) / 'vmwarden.db'}"


def newest_revision() -> str:
    """The newest migration's id from the file names (``0007_….py`` → ``"0007"``).

    Revisions are linear and numbered (tests/store/test_store_migrations.py checks this
    equals Alembic's head), so an up-to-date store is recognised without importing Alembic,
    which cost a third of every CLI call's start-up.
    """
    return max(p.name[:4] for p in (MIGRATIONS / "versions").glob("[0-9][0-9][0-9][0-9]_*.py"))

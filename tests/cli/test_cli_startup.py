"""CLI start-up: commands are imported only when run, and help fits 80 columns whole."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vmwarden.cli.main import COMMANDS, load_command

HEAVY = ("sqlalchemy", "alembic", "fastapi", "uvicorn", "libvirt", "dissect", "pydantic_core")

PROBE = """
import json, sys
from vmwarden.cli.main import main
sys.argv = ["vmwarden", *sys.argv[1:]]
try:
    main()
except SystemExit:
    pass
print("LOADED", json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def modules(*args: str) -> set[str]:
    """Every module a fresh ``vmwarden ARGS`` process imported."""
    ran = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, check=True
    )
    line = next(s for s in ran.stderr.splitlines() if s.startswith("LOADED "))
    return set(json.loads(line.removeprefix("LOADED ")))


def loaded(*args: str) -> set[str]:
    """The heavy packages a fresh ``vmwarden ARGS`` process imported."""
    return {m.split(".")[0] for m in modules(*args)} & set(HEAVY)


def test_help_imports_no_command_module() -> None:
    assert loaded("--help") == set()


def test_report_on_a_current_store_imports_neither_alembic_nor_the_api(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'v.db'}"
    first = loaded("report", "findings", "--db", db)  # creates and migrates the store
    assert "alembic" in first
    again = loaded("report", "vms", "--db", db)
    assert "sqlalchemy" in again  # it did read the store
    assert again.isdisjoint({"alembic", "fastapi", "uvicorn", "libvirt", "dissect"})


def test_report_findings_on_a_current_sqlite_store_imports_no_sqlalchemy(tmp_path: Path) -> None:
    """``store.reads``: the common case (an SQLite file at the newest migration) is read
    with the standard sqlite3 module; SQLAlchemy was most of the command's start-up."""
    db = f"sqlite:///{tmp_path / 'v.db'}"
    assert "sqlalchemy" in loaded("report", "findings", "--db", db)  # created by Store
    again = modules("report", "findings", "--db", db)
    assert "vmwarden.store.reads" in again
    # (pydantic_core comes with Typer's parameter handling, in every command that runs)
    assert not {m.split(".")[0] for m in again} & (set(HEAVY) - {"pydantic_core"})


@pytest.mark.parametrize("what", ["vms", "images", "audit"])
def test_report_reads_the_store_without_the_orm(tmp_path: Path, what: str) -> None:
    """The store's tables are Core tables: reading them needs no ``sqlalchemy.orm`` (its
    import and declarative mapping were a quarter of ``report``'s start-up)."""
    db = f"sqlite:///{tmp_path / 'v.db'}"
    subprocess.run(
        [sys.executable, "-m", "vmwarden.cli.main", "report", what, "--db", db],
        capture_output=True,
        check=True,
    )
    got = modules("report", what, "--db", db)
    assert "sqlalchemy.engine" in got and "vmwarden.store.tables" in got  # it read the store
    orm = sorted(m for m in got if m == "sqlalchemy.orm" or m.startswith("sqlalchemy.orm."))
    assert orm == []


@pytest.mark.parametrize("name", list(COMMANDS))
def test_listing_line_is_the_commands_own_help(name: str) -> None:
    command = load_command(name)
    assert command is not None and command.name == name
    short = COMMANDS[name][2].removesuffix("...")
    assert " ".join((command.help or "").split()).startswith(short), (name, command.help)


def test_unknown_command_is_refused() -> None:
    assert load_command("nope") is None
    ran = subprocess.run(
        [sys.executable, "-m", "vmwarden.cli.main", "nope"],
        check=False,
        capture_output=True,
        text=True,
    )
    assert ran.returncode == 2 and "No such command 'nope'" in ran.stderr


@pytest.mark.parametrize("name", ["scan", "watch", "serve", "release", "report"])
def test_help_at_80_columns_keeps_every_option_name_whole(name: str) -> None:
    env = {**os.environ, "COLUMNS": "80"}
    ran = subprocess.run(
        [sys.executable, "-m", "vmwarden.cli.main", name, "--help"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    lines = ran.stdout.splitlines()
    assert max(map(len, lines)) <= 80
    command = load_command(name)
    assert command is not None
    for param in command.params:
        for opt in getattr(param, "opts", []):
            if opt.startswith("--"):
                assert opt in ran.stdout, f"{name}: {opt} cut or missing"
    assert "…" not in ran.stdout

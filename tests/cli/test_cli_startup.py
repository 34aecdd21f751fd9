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
heavy = {HEAVY!r}
got = sorted({{m.split(".")[0] for m in sys.modules}} & set(heavy))
print("LOADED", json.dumps(got), file=sys.stderr)
"""


def loaded(*args: str) -> set[str]:
    """The heavy packages a fresh ``vmwarden ARGS`` process imported."""
    code = PROBE.format(HEAVY=HEAVY)
    ran = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=True
    )
    line = next(s for s in ran.stderr.splitlines() if s.startswith("LOADED "))
    return set(json.loads(line.removeprefix("LOADED ")))


def test_help_imports_no_command_module() -> None:
    assert loaded("--help") == set()


def test_report_on_a_current_store_imports_neither_alembic_nor_the_api(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'v.db'}"
    first = loaded("report", "findings", "--db", db)  # creates and migrates the store
    assert "alembic" in first
    again = loaded("report", "findings", "--db", db)
    assert "sqlalchemy" in again  # it did read the store
    assert again.isdisjoint({"alembic", "fastapi", "uvicorn", "libvirt", "dissect"})


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

"""CLI fixtures: the real ``vmwarden`` process over a demo estate and a real SQLite file.

Commands run as ``python -m vmwarden.cli.main`` in a subprocess, so exit codes, stdout and
stderr are exactly what an operator or a script sees (no terminal: Rich uses 80 columns).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from vmwarden.engine.demo import DemoEstate, build_demo_estate


@dataclass
class Ran:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def error_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.startswith("error:")]


class Cli:
    """Runs ``vmwarden ARGS`` against one database."""

    def __init__(self, db: str, cwd: Path) -> None:
        self.db = db
        self.cwd = cwd

    def __call__(self, *args: str | Path, db: bool = True) -> Ran:
        env = {**os.environ, "VMWARDEN_DB": self.db}
        env.pop("COLUMNS", None)
        if not db:
            env.pop("VMWARDEN_DB")
        proc = subprocess.run(
            [sys.executable, "-m", "vmwarden.cli.main", *map(str, args)],
            capture_output=True,
            text=True,
            env=env,
            cwd=self.cwd,
            timeout=120,
            check=False,
        )
        return Ran(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def cli(tmp_path: Path, db_url: str) -> Cli:
    return Cli(db_url, tmp_path)


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoEstate:
    """One demo estate for the session; commands only read it (the test driver never writes
    its host files back)."""
    return build_demo_estate(tmp_path_factory.mktemp("demo"))


@pytest.fixture
def demo_args(demo: DemoEstate) -> list[str]:
    """``-c URI … -p POLICY`` for the whole demo estate."""
    args = [arg for uri in demo.uris for arg in ("-c", uri)]
    return [*args, "-p", str(demo.policy_path)]

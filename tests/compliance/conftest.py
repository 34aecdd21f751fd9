"""Compliance fixtures: the real CLI (tests/cli) over a store a real demo scan filled."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.conftest import Cli, cli, demo  # noqa: F401 - fixtures used here
from vmwarden.engine.demo import DemoEstate


def scanned_store(tmp: Path, estate: DemoEstate, hosts: tuple[str, ...] = ()) -> Cli:
    """A new SQLite store after a real ``vmwarden scan`` of the demo (or of ``hosts`` only)."""
    run = Cli(f"sqlite:///{tmp / 'vmwarden.db'}", tmp)
    uris = [u for u in estate.uris if not hosts or any(f"/{h}.xml" in u for h in hosts)]
    ran = run("scan", *[a for u in uris for a in ("-c", u)], "-p", estate.policy_path)
    assert ran.code == 0, ran.err
    return run


@pytest.fixture(scope="module")
def demo_scanned(tmp_path_factory: pytest.TempPathFactory, demo: DemoEstate) -> Cli:  # noqa: F811
    """The whole demo estate scanned once per module (a scan takes several seconds)."""
    return scanned_store(tmp_path_factory.mktemp("compliance"), demo)

"""Fixtures shared by every layer's tests: real things, built small."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO.parent / "shared" / "corpus" / "libvirt-xml"


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """The ~100 real libvirt domain XMLs from libvirt's own test suite."""
    if not CORPUS.is_dir():
        raise RuntimeError(f"libvirt XML corpus not found at {CORPUS}")
    return CORPUS


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """A fresh SQLite database file per test."""
    return f"sqlite:///{tmp_path / 'vmwarden.db'}"

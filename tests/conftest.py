"""Fixtures shared by every layer's tests: real things, built small."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
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


def qemu_img(*args: str | Path) -> None:
    """Run ``qemu-img`` as an administrator would (fails the test when it fails)."""
    subprocess.run(["qemu-img", *map(str, args)], check=True, capture_output=True)


# --- opens seen by the interpreter (to prove a file was never opened) ------------------------

_OPENED: list[list[str]] = []


def _audit(event: str, args: tuple[object, ...]) -> None:
    if event == "open" and _OPENED and isinstance(args[0], str | bytes | os.PathLike):
        _OPENED[-1].append(os.fsdecode(args[0]))


sys.addaudithook(_audit)


@pytest.fixture
def opened() -> Iterator[list[str]]:
    """Every path Python opens (``open``/``os.open``) while the test runs.

    Audit hooks see each open before it happens, so a test can prove a file was never
    opened, even as root (where ``chmod 000`` would not stop a read).
    """
    record: list[str] = []
    _OPENED.append(record)
    try:
        yield record
    finally:
        _OPENED.remove(record)

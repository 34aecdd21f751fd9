"""Fixtures shared by every layer's tests: real things, built small."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def find_corpus() -> Path | None:
    """The libvirt XML corpus: ``$VMWARDEN_CORPUS``, else ``../shared/corpus`` beside the repo.

    The corpus is not part of this repository (it is libvirt's own test XMLs, kept by the
    organisation), so a bare clone has none: the tests that need it skip and say why.
    Either directory may be the corpus itself or hold it as ``libvirt-xml/``.
    """
    bases = [Path(v) for v in [os.environ.get("VMWARDEN_CORPUS")] if v]
    bases.append(REPO.parent / "shared" / "corpus")
    for base in bases:
        for where in (base / "libvirt-xml", base):
            if where.is_dir() and any(where.glob("*.xml")):
                return where
    return None


CORPUS = find_corpus()
CORPUS_MISSING = (
    "libvirt XML corpus not found: set $VMWARDEN_CORPUS or put it at ../shared/corpus "
    "beside the repository (CI has it)"
)
needs_corpus = pytest.mark.skipif(CORPUS is None, reason=CORPUS_MISSING)


def corpus_files(predicate: str = "") -> list[Path]:
    """The corpus's XML files (those containing ``predicate``); none without a corpus."""
    if CORPUS is None:
        return []
    return sorted(p for p in CORPUS.glob("*.xml") if predicate in p.read_text())


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """The ~100 real libvirt domain XMLs from libvirt's own test suite."""
    if CORPUS is None:
        pytest.skip(CORPUS_MISSING)
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


@pytest.fixture(scope="session")
def watch_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """The one asyncio loop in-process watchers run on, for the whole session: libvirt keeps
    the first event loop a process registers for good (``use_asyncio_loop`` refuses another),
    so every test module that runs a ``Watcher`` in this process must share it."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)

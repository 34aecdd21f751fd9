"""Fixtures for the inspect tests: real images made with qemu-img, and a record of opens."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

MIB = 1024 * 1024

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


class Images:
    """Real images under ``root``, made by ``qemu-img`` as an administrator would."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def qemu_img(self, *args: str | Path) -> None:
        subprocess.run(["qemu-img", *map(str, args)], check=True, capture_output=True)

    def qcow2(
        self,
        name: str,
        *,
        backing: str | None = None,
        backing_fmt: str | None = "qcow2",
        size: str = "64M",
    ) -> Path:
        """``qemu-img create -f qcow2``; with ``backing``, a linked clone naming it verbatim."""
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        args: list[str | Path] = ["create", "-q", "-f", "qcow2"]
        if backing is not None:
            args += ["-u", "-b", backing]
            if backing_fmt:
                args += ["-F", backing_fmt]
        self.qemu_img(*args, path, size)
        return path

    def raw(self, name: str, data: bytes = b"", size: int = 4 * MIB) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            f.truncate(size)
            f.write(data)
        return path

    def convert(self, src: Path, fmt: str, name: str) -> Path:
        out = self.root / name
        self.qemu_img("convert", "-q", "-O", fmt, src, out)
        return out


@pytest.fixture
def images(tmp_path: Path) -> Images:
    return Images(tmp_path)

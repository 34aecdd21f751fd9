"""The journal of snapshots a connector takes to read disks, so that none is ever leaked.

Why one module: every platform that reads a disk through a snapshot it takes (EBS volumes;
running vSphere VMs) has the same crash window between "create" and "remove". Before a
snapshot is created its token goes into a small JSON file on this machine, read and
rewritten whole under an exclusive lock and fsynced; the next connection to the same scope
(an AWS region, a vCenter) removes the snapshots whose entry belongs to a process of this
machine that is gone. An entry of a live process, or of another machine, is never touched.

The file is ``$XDG_STATE_HOME/vmwarden/<name>`` (platformdirs); each entry holds the scope,
the connector's own fields, ``pid`` and ``host``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import platformdirs


def journal_file(name: str) -> Path:
    return Path(platformdirs.user_state_dir("vmwarden")) / name


class SnapshotJournal:
    """One journal file; ``scope_key`` names the entry field a connection's scope is in."""

    def __init__(self, path: Path, scope_key: str) -> None:
        self.path = path
        self.scope_key = scope_key

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, dict[str, Any]]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                entries = json.loads(self.path.read_text()) if self.path.exists() else {}
            except (OSError, ValueError):
                entries = {}  # a torn file: what it held is lost (the snapshots stay named)
            before = json.dumps(entries, sort_keys=True)
            yield entries
            if json.dumps(entries, sort_keys=True) != before:
                tmp = self.path.with_suffix(".tmp")
                with open(tmp, "w") as f:
                    json.dump(entries, f, sort_keys=True)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.path)

    def add(self, scope: str, fields: list[dict[str, Any]]) -> list[str]:
        """One entry per item of ``fields`` in one write (thousands of volumes must not
        rewrite the file thousands of times); the tokens, in order."""
        tokens = [uuid.uuid4().hex for _ in fields]
        pid, host = os.getpid(), socket.gethostname()
        with self._locked() as entries:
            for token, extra in zip(tokens, fields, strict=True):
                entries[token] = {self.scope_key: scope, **extra, "pid": pid, "host": host}
        return tokens

    def update(self, changes: dict[str, dict[str, Any]]) -> None:
        """token → fields to set (e.g. the snapshot id once known), in one write."""
        with self._locked() as entries:
            for token, extra in changes.items():
                if token in entries:
                    entries[token].update(extra)

    def forget(self, tokens: list[str]) -> None:
        with self._locked() as entries:
            for token in tokens:
                entries.pop(token, None)

    def entries(self) -> dict[str, dict[str, Any]]:
        with self._locked() as entries:
            return {k: dict(v) for k, v in entries.items()}

    def abandoned(self, scope: str) -> dict[str, dict[str, Any]]:
        """Entries of ``scope`` whose process (on this machine) is gone."""
        here = socket.gethostname()
        return {
            token: e
            for token, e in self.entries().items()
            if e.get(self.scope_key) == scope and e.get("host") == here and not alive(e.get("pid"))
        }


def alive(pid: Any) -> bool:
    """Whether a process of this machine with that pid exists (a pid from a JSON file)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

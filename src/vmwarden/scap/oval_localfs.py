"""A :class:`GuestFiles` over a directory holding a guest's root (a read-only mount, an
extracted tree): what tests and the OpenSCAP comparison evaluate on.

Paths resolve as in a chroot: ``..`` stops at the root and every symbolic link, absolute or
relative, is followed inside the root, so nothing outside it is ever read.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from vmwarden.inspect.guest.files import MAX_ENTRIES, GuestFiles, GuestReadError

_MAX_LINKS = 40


class LocalRootFiles(GuestFiles):
    """Read-only access to ``root`` as if it were ``/``."""

    def __init__(self, root: str | Path) -> None:
        super().__init__(fs=None)
        self.root = Path(root).resolve()

    def _resolve(self, path: str, *, follow_last: bool = True) -> Path:
        parts = [p for p in path.split("/") if p not in ("", ".")]
        cur: list[str] = []
        links = 0
        while parts:
            name = parts.pop(0)
            if name == "..":
                if cur:
                    cur.pop()
                continue
            cand = self.root.joinpath(*cur, name)
            if (parts or follow_last) and cand.is_symlink():
                links += 1
                if links > _MAX_LINKS:
                    raise GuestReadError(f"{path}: too many levels of symbolic links")
                target = os.readlink(cand)
                if target.startswith("/"):
                    cur = []
                parts = [p for p in target.split("/") if p not in ("", ".")] + parts
                continue
            cur.append(name)
        return self.root.joinpath(*cur)

    def _path(self, path: str) -> Any:
        return self._resolve(path)

    def lstat(self, path: str) -> Any | None:
        try:
            return self._resolve(path, follow_last=False).lstat()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise GuestReadError(f"{path}: {exc.strerror}") from None

    def scan(self, path: str) -> list[tuple[str, Any]] | None:
        """A directory's entries with each one's own stat (links not followed), sorted;
        ``None`` when ``path`` is not a directory."""
        d = self._resolve(path)
        if not d.is_dir():
            return None
        try:
            with os.scandir(d) as it:
                entries = [(e.name, e.stat(follow_symlinks=False)) for e in it]
        except OSError as exc:
            raise GuestReadError(f"{path}: {exc.strerror}") from None
        if len(entries) > MAX_ENTRIES:
            raise GuestReadError(f"{path}: more than {MAX_ENTRIES} entries")
        return sorted(entries)

    def readlink(self, path: str) -> str | None:
        p = self._resolve(path, follow_last=False)
        return os.readlink(p) if p.is_symlink() else None

"""Reading files of the guest filesystem, with limits, and failures as one exception type."""

from __future__ import annotations

import fnmatch
import posixpath
import stat
from typing import Any, BinaryIO

from vmwarden.inspect.guest.extstat import ext_lstat, ext_scan

#: Largest guest file read whole (a large dpkg status is a few MiB).
MAX_FILE = 64 * 1024 * 1024
#: Most entries returned by one directory listing.
MAX_ENTRIES = 100_000


class GuestReadError(Exception):
    """A guest file or directory exists but could not be read (corrupt, loop, too large)."""


class GuestFiles:
    """Read-only access to the guest's root filesystem (``target.fs`` of dissect.target).

    ``None`` means "not there"; anything else that goes wrong raises :class:`GuestReadError`.
    """

    def __init__(self, fs: Any, *, by_listing: bool = False) -> None:
        """``by_listing``: answer ``lstat`` and ``read_bytes`` from directory reads (see
        :meth:`_listed`); for callers that look many paths up (OVAL). Only on a
        case-sensitive filesystem: a Windows guest's names match whatever their case."""
        self._fs = fs
        self._by_listing = by_listing and bool(getattr(fs, "case_sensitive", True))
        self._dirs: dict[str, Any] = {}  # directories seen by scan(), not yet scanned
        self._mounts: set[str] | None = None
        # lstat() and read_bytes() answered from directory reads (see _listed)
        self._listings: dict[str, dict[str, Any] | None] = {}
        self._regular: dict[str, Any] = {}  # regular files met in scans: how to open them

    def _path(self, path: str) -> Any:
        return self._fs.path(path)

    def read_bytes(self, path: str, *, limit: int = MAX_FILE) -> bytes | None:
        """The file's bytes, ``None`` if it does not exist (or is not a file)."""
        listed = self._listed(path)
        if listed is not None and posixpath.basename(path) not in listed:
            return None
        if listed is not None and path in self._regular:
            return self._read_entry(path, self._regular[path], limit)
        try:
            p = self._path(path)
            if not p.exists():
                return None
            if not p.is_file():
                return None
            with p.open("rb") as fh:
                data = fh.read(limit + 1)
        except FileNotFoundError:
            return None
        except Exception as exc:  # the guest filesystem is hostile input
            raise GuestReadError(f"{path}: {_why(exc)}") from None
        if len(data) > limit:
            raise GuestReadError(f"{path}: larger than {limit} bytes")
        return bytes(data)

    def open(self, path: str, *, limit: int = MAX_FILE) -> BinaryIO | None:
        """The file opened for reading, ``None`` if it does not exist (or is not a file).

        For formats read by seeking (registry hives): only the parts looked up are read.
        A file over ``limit`` bytes is refused, like :meth:`read_bytes`.
        """
        try:
            p = self._path(path)
            if not p.exists() or not p.is_file():
                return None
            size = p.stat().st_size
            if size > limit:
                raise GuestReadError(f"{path}: larger than {limit} bytes")
            return p.open("rb")
        except FileNotFoundError:
            return None
        except GuestReadError:
            raise
        except Exception as exc:  # the guest filesystem is hostile input
            raise GuestReadError(f"{path}: {_why(exc)}") from None

    def _read_entry(self, path: str, entry: Any, limit: int) -> bytes:
        """A regular file's bytes from the entry its directory's scan met (no path lookup)."""
        try:
            with entry() as fh:
                data = fh.read(limit + 1)
        except Exception as exc:  # the guest filesystem is hostile input
            raise GuestReadError(f"{path}: {_why(exc)}") from None
        if len(data) > limit:
            raise GuestReadError(f"{path}: larger than {limit} bytes")
        return bytes(data)

    def read_text(self, path: str, *, limit: int = MAX_FILE) -> str | None:
        data = self.read_bytes(path, limit=limit)
        return None if data is None else data.decode("utf-8", "replace")

    def exists(self, path: str) -> bool:
        try:
            return bool(self._path(path).exists())
        except FileNotFoundError:
            return False
        except Exception as exc:  # as above
            raise GuestReadError(f"{path}: {_why(exc)}") from None

    def is_dir(self, path: str) -> bool:
        try:
            return bool(self._path(path).is_dir())
        except FileNotFoundError:
            return False
        except Exception as exc:  # as above
            raise GuestReadError(f"{path}: {_why(exc)}") from None

    def lstat(self, path: str) -> Any | None:
        """The entry's own stat (a link is not followed: mode, uid, gid, size), ``None`` if
        absent. OVAL file tests judge modes and owners from it."""
        listed = self._listed(path)
        if listed is not None:
            return listed.get(posixpath.basename(path))
        try:
            return self._path(path).lstat()
        except FileNotFoundError:
            return None
        except Exception as exc:  # as above
            raise GuestReadError(f"{path}: {_why(exc)}") from None

    def scan(self, path: str) -> list[tuple[str, Any]] | None:
        """A directory's entries with each one's own stat (links not followed), sorted by
        name; ``None`` when ``path`` is not a directory.

        One directory read: looking each name up again by path makes dissect re-scan every
        directory on the way (ext4 directories are searched linearly), which turned a walk of
        the Debian image's 17k files into a minute; the entries' own stats take 50 ms.
        """
        if path in self._listings:
            known = self._listings[path]
            return None if known is None else list(known.items())
        try:
            here = self._dirs.pop(path, None)  # met in its parent's scan: no lookup by path
            if here is None:
                if not self._path(path).is_dir():
                    return None
                here = self._fs.get(path)
            out: list[tuple[str, Any]] = []
            raw = ext_scan(here) if self._by_listing else None
            if raw is not None:
                return self._scan_raw(path, raw)
            for entry in here.scandir():
                st = _entry_lstat(entry)
                out.append((entry.name, st))
                if len(out) > MAX_ENTRIES:
                    raise GuestReadError(f"{path}: more than {MAX_ENTRIES} entries")
                child = posixpath.join(path, entry.name)
                if stat.S_ISREG(st.st_mode) and len(self._regular) < MAX_ENTRIES:
                    self._regular[child] = lambda entry=entry: entry.get().open()
                if (
                    stat.S_ISDIR(st.st_mode)
                    and child not in self._mount_points()  # looked up by path: the mount
                    and len(self._dirs) < MAX_ENTRIES
                ):
                    self._dirs[child] = entry.get()
        except FileNotFoundError:
            return None
        except GuestReadError:
            raise
        except Exception as exc:  # as above
            raise GuestReadError(f"{path}: {_why(exc)}") from None
        out.sort(key=lambda e: e[0])
        if self._by_listing and len(self._listings) < MAX_ENTRIES:
            self._listings[path] = dict(out)
        return out

    def _scan_raw(self, path: str, nodes: Any) -> list[tuple[str, Any]]:
        """:meth:`scan` of a directory on one ext filesystem from its inodes (``ext_scan``):
        dissect.target wraps each entry twice (two objects with a per-instance cache each),
        two thirds of a listing's time. Subdirectories are kept as their inodes."""
        out: list[tuple[str, Any]] = []
        for name, node, st in nodes:
            out.append((name, st))
            if len(out) > MAX_ENTRIES:
                raise GuestReadError(f"{path}: more than {MAX_ENTRIES} entries")
            child = posixpath.join(path, name)
            if stat.S_ISREG(st.st_mode) and len(self._regular) < MAX_ENTRIES:
                self._regular[child] = node.open
            elif (
                stat.S_ISDIR(st.st_mode)
                and child not in self._mount_points()
                and len(self._dirs) < MAX_ENTRIES
            ):
                self._dirs[child] = node
        out.sort(key=lambda e: e[0])
        if len(self._listings) < MAX_ENTRIES:
            self._listings[path] = dict(out)
        return out

    def _listed(self, path: str) -> dict[str, Any] | None:
        """The stats of ``path``'s directory by name, from one read of each directory on the
        way; ``None`` when this route does not apply and the caller asks dissect by path.

        Each lookup by path makes dissect parse every directory on it again (ext4 directories
        are searched linearly, entry by entry through cstruct): the Debian 11 OVAL looks ~900
        paths up, which took about 1 s of the evaluation. A directory read once answers every
        name in it. Only plain absolute paths take this route (no ``..``, ``.``, ``//``), and
        not mount points (their own stat is the mounted filesystem's root, not the entry
        under it); a directory dissect cannot read falls back to the lookup by path.
        """
        if (
            not self._by_listing
            or path == "/"
            or not path.startswith("/")
            or posixpath.normpath(path) != path
            or path in self._mount_points()
        ):
            return None
        here = "/"
        try:
            for name in [None, *path.split("/")[1:-1]]:
                if name is not None:
                    here = posixpath.join(here, name)
                if here not in self._listings:
                    if len(self._listings) >= MAX_ENTRIES:
                        return None
                    if self.scan(here) is None:
                        self._listings[here] = None
                if self._listings[here] is None:
                    return {}  # a directory on the way is absent or not a directory
        except GuestReadError:
            return None
        return self._listings[here]

    def _mount_points(self) -> set[str]:
        """Where dissect mounted the guest's other filesystems (/boot, /var... from fstab)."""
        if self._mounts is None:
            mounts = getattr(self._fs, "mounts", None) or {}
            self._mounts = {"/" + str(m).strip("/") for m in mounts}
        return self._mounts

    def readlink(self, path: str) -> str | None:
        """A symbolic link's target as written, ``None`` when ``path`` is not a link."""
        try:
            p = self._path(path)
            if not p.is_symlink():
                return None
            return str(p.readlink())
        except (FileNotFoundError, OSError):
            return None
        except Exception as exc:  # as above
            raise GuestReadError(f"{path}: {_why(exc)}") from None

    def listdir(self, path: str) -> list[str] | None:
        """Sorted entry names of a directory, ``None`` if it does not exist."""
        try:
            p = self._path(path)
            if not p.is_dir():
                return None
            names: list[str] = []
            for entry in p.iterdir():
                names.append(entry.name)
                if len(names) > MAX_ENTRIES:
                    raise GuestReadError(f"{path}: more than {MAX_ENTRIES} entries")
        except FileNotFoundError:
            return None
        except GuestReadError:
            raise
        except Exception as exc:  # as above
            raise GuestReadError(f"{path}: {_why(exc)}") from None
        return sorted(names)

    def glob(self, directory: str, pattern: str) -> list[str]:
        """Full paths of the entries of ``directory`` matching ``pattern``, sorted."""
        names = self.listdir(directory) or []
        return [posixpath.join(directory, n) for n in names if fnmatch.fnmatchcase(n, pattern)]


def _entry_lstat(entry: Any) -> Any:
    """A dissect directory entry's own stat, from the first layer entry that has one."""
    inner = getattr(entry, "entry", None)
    for layer in inner if isinstance(inner, list) else []:
        fast = ext_lstat(layer)
        if fast is not None:
            return fast
        try:
            return layer.stat(follow_symlinks=False)
        except (AttributeError, NotImplementedError):
            continue
    return entry.stat(follow_symlinks=False)


def _why(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__

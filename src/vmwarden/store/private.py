"""Files only their owner may read: the store's SQLite database and the OCSF alert file.

Why: the database holds argon2 password hashes and session/token digests, and alerts name
VMs, images and findings; a file another local user can read hands them out. A file created
here is 0600 whatever the umask; one that already exists with group or other bits (an older
vmwarden, a ``touch``, a restored backup) is tightened to 0600 when it is opened, with a
warning naming the file and its old mode, so the change is never silent.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE = 0o600


def tighten_fd(fd: int, path: str | os.PathLike[str]) -> None:
    """Make the open file ``fd`` (named ``path`` in the warning) 0600 if it is looser."""
    mode = stat.S_IMODE(os.fstat(fd).st_mode)
    if not mode & 0o077:
        return
    try:
        os.fchmod(fd, mode & 0o700 or PRIVATE)
    except OSError as exc:
        log.warning(
            "%s is readable by other users (mode %04o) and cannot be made private: %s",
            path,
            mode,
            exc.strerror or exc,
        )
        return
    log.warning(
        "%s was mode %04o (readable by other users); changed to %04o",
        path,
        mode,
        mode & 0o700 or PRIVATE,
    )


def tighten(path: str | os.PathLike[str]) -> None:
    """:func:`tighten_fd` on ``path`` if it exists (a missing file is nothing to do)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return
    except OSError as exc:
        log.warning("cannot check the mode of %s: %s", path, exc.strerror or exc)
        return
    try:
        tighten_fd(fd, path)
    finally:
        os.close(fd)


def create_private(path: Path) -> None:
    """Create ``path`` 0600 if missing, else tighten it (see the module docstring)."""
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, PRIVATE)
    try:
        tighten_fd(fd, path)
    finally:
        os.close(fd)


def open_append(path: Path) -> int:
    """A descriptor appending to ``path``, created 0600 or tightened (caller closes it)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, PRIVATE)
    try:
        tighten_fd(fd, path)
    except BaseException:
        os.close(fd)
        raise
    return fd

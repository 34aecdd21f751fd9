"""Is everything libvirtd will run as root for our hook owned by root, end to end?

libvirtd runs the qemu hook as uid 0 at every VM start. If any file or directory on the way
is writable by another user — the hook directory, ``/bin/sh``, the Python interpreter, a
module it imports, or any directory above them, through any symlink — that user can make
root run their code (an editable install in a developer's home directory was exactly that).
So ``hook install`` checks every path component, following each symlink and checking the
components of its target too, and refuses, naming the path, its owner and its mode.

Rule per component: owned by root, and not writable by group or others — except a
root-owned sticky directory such as ``/tmp``, where nobody else may rename or remove root's
entries (the next component is checked in its own right).
"""

from __future__ import annotations

import json
import os
import pwd
import stat
import subprocess
from pathlib import PurePosixPath

from vmwarden.errors import VmwardenError

MAX_SYMLINKS = 40  # as the kernel's path walk

#: What the hook's Python part imports (the hook client, hook_qemu); their files are checked too.
HOOK_IMPORTS = "__future__, json, os, socket, struct, sys, time, syslog"


class UnsafePath(VmwardenError):
    """A path the hook depends on could be changed by someone other than root."""

    exit_code = 2


def _owner(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _check(path: str, st: os.stat_result) -> None:
    mode = stat.S_IMODE(st.st_mode)
    kind = "directory" if stat.S_ISDIR(st.st_mode) else "file"
    if st.st_uid != 0:
        raise UnsafePath(
            f"{path} is owned by {_owner(st.st_uid)} (mode {mode:04o}), not root: that user "
            "could make libvirtd run their code as root",
            hint=f"chown root:root {path} (and chmod go-w), or use a root-owned {kind}",
        )
    sticky_dir = stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX
    if mode & 0o022 and not sticky_dir:
        who = "others" if mode & 0o002 else "its group"
        raise UnsafePath(
            f"{path} is writable by {who} (owner root, mode {mode:04o}): they could make "
            "libvirtd run their code as root",
            hint=f"chmod go-w {path}",
        )


def check_path(path: str | os.PathLike[str], _hops: int = 0) -> str:
    """Check every component of ``path`` (absolute), following symlinks; returns the
    resolved path. A missing component raises :class:`UnsafePath` too (nothing to trust)."""
    parts = PurePosixPath(os.fspath(path)).parts
    if not parts or parts[0] != "/":
        raise UnsafePath(f"{os.fspath(path)!r} is not an absolute path")
    cur = "/"
    _check(cur, os.lstat(cur))
    for comp in parts[1:]:
        if comp == "..":
            cur = os.path.dirname(cur)  # cur is resolved: its parent is the real one
            continue
        nxt = os.path.join(cur, comp)
        try:
            st = os.lstat(nxt)
        except OSError as exc:
            raise UnsafePath(f"cannot check {nxt}: {exc.strerror or exc}") from None
        if stat.S_ISLNK(st.st_mode):
            if _hops >= MAX_SYMLINKS:
                raise UnsafePath(f"too many symbolic links resolving {os.fspath(path)}")
            # The link lives in ``cur`` (checked); its target is walked in its own right.
            cur = check_path(os.path.join(cur, os.readlink(nxt)), _hops + 1)
        else:
            _check(nxt, st)
            cur = nxt
    return cur


def interpreter_files(python: str, timeout: float = 30.0) -> list[str]:
    """The import path and the module files (sources and their ``.pyc``) ``python -I``
    loads to run the hook (``-S``: no site-packages, no ``.pth`` files).

    ``python`` itself must have been checked first: this runs it.
    """
    code = (
        f"import json, sys; import {HOOK_IMPORTS}; "
        "mods = list(sys.modules.values()); "
        "files = {getattr(m, a, None) for m in mods for a in ('__file__', '__cached__')}; "
        "print(json.dumps(sorted(f for f in files if f) + [p for p in sys.path if p]))"
    )
    try:
        done = subprocess.run(
            [python, "-I", "-S", "-c", code],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd="/",
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"},
        )
        names = json.loads(done.stdout) if done.returncode == 0 else None
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        raise UnsafePath(f"cannot run {python}: {exc}") from None
    if not isinstance(names, list):
        raise UnsafePath(
            f"{python} cannot run the hook (exit {done.returncode}): {done.stderr.strip()[-300:]}",
            hint="the hook needs a Python 3 with the standard library (--python)",
        )
    return [str(n) for n in names if os.path.exists(str(n))]


def check_hook_chain(*, shell: str, python: str, hook_dir: str) -> None:
    """Everything the hook needs, in the order it is used: the directory it lives in, the
    shell libvirtd starts it with, the interpreter, and what the interpreter loads."""
    check_path(hook_dir)
    check_path(shell)
    check_path(python)
    for name in interpreter_files(python):
        check_path(name)

"""Install, remove and describe the libvirt qemu hook, and restart libvirtd so it sees it.

libvirtd runs the hook as root, so everything it runs must be root's, end to end: the file
is self-contained and never imports vmwarden (whose code may live in a directory another
user can write — an editable install in a home directory). It is a few lines of ``/bin/sh``
that exit 0 for every operation but ``prepare`` (so ``reconnect``, which kills running VMs
when it fails, never depends on Python) and otherwise exec the root-owned system interpreter
``/usr/bin/python3 -I -S`` on the rest of the same file: the source of
:mod:`.hook_qemu` (the admission-socket client, standard library only), copied in
at install. ``install`` writes it 0755 root:root and first checks (:mod:`.hook_trust`) that the
hook directory, ``/bin/sh``, the interpreter and every module it loads are owned by root and
writable by nobody else, through every symlink; it refuses otherwise. A marker line makes
the file ours: ``uninstall`` removes only a file carrying it, and
``install`` never overwrites a hook someone else wrote. Such a host can take ours as a drop-in,
``/etc/libvirt/hooks/qemu.d/vmwarden`` (libvirt >= 6.5 runs ``qemu.d/*`` after the main
script; any of them failing refuses the start).

libvirtd decides whether a qemu hook exists when it starts *and when it reloads*, then runs
the file by path at each call (:mod:`.hook_libvirtd`). So after the first install libvirtd must be
reloaded (``reload_libvirtd``: SIGHUP, nothing stops) or restarted (``restart_libvirtd``);
removing the file needs neither (a missing hook is simply not run).
"""

from __future__ import annotations

import os
import re
import shlex
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from vmwarden.connectors.libvirt import hook_qemu as client
from vmwarden.connectors.libvirt.hook_libvirtd import (
    libvirtd_pid,
    process_start,
    reload_libvirtd,
    reloaded_since_start,
    restart_libvirtd,
    runs_hooks_at,
)
from vmwarden.connectors.libvirt.hook_qemu import Unreachable, ask  # noqa: F401 - interface
from vmwarden.connectors.libvirt.hook_trust import UnsafePath, check_hook_chain, check_path
from vmwarden.errors import VmwardenError

HOOK_DIR = Path("/etc/libvirt/hooks")
MAIN_HOOK = HOOK_DIR / "qemu"
DROP_IN = HOOK_DIR / "qemu.d" / "vmwarden"
MARKER = "# vmwarden-managed-hook v1"
SHELL = "/bin/sh"
SYSTEM_PYTHON = "/usr/bin/python3"
#: The line after which the hook file holds the client's Python source.
PYTHON_PART = "# --- vmwarden hook client (Python, standard library only) ---"
#: ``python -I -S -c BOOT HOOKFILE ARGS``: run the hook file's Python part as ``__main__``.
#: A file without that line fails (IndexError, exit 1): the start is refused, never waved.
BOOT = (
    'import sys; p = sys.argv.pop(1); src = open(p, encoding="utf-8").read()'
    f'.split("\\n{PYTHON_PART}\\n", 1)[1]; '
    'exec(compile(src, p, "exec"), {"__name__": "__main__"})'
)
DEFAULT_LOG = "/var/log/vmwarden/hook.log"
#: The connection whose VMs this machine's hook admits (the local system daemon).
LOCAL_URI = "qemu:///system"
_GLOB = re.compile(r"[A-Za-z0-9_.*?-]+")


class HookError(VmwardenError):
    """The hook could not be installed or removed."""

    exit_code = 2


@dataclass(frozen=True, slots=True)
class HookStatus:
    path: Path
    exists: bool
    ours: bool
    settings: dict[str, str]
    libvirtd_pid: int | None
    # True: libvirtd runs it: the file predates libvirtd's start, or vmwarden reloaded this
    # libvirtd with a qemu hook in place (``why`` says which). None: cannot tell (libvirtd
    # runs it only if some qemu hook existed at its start or last reload).
    libvirtd_sees_it: bool | None
    why: str = ""
    # Why the hook is not root's end to end (``install`` would refuse it now), else None.
    unsafe: str | None = None


def render(
    *,
    socket: str,
    unreachable: str,
    python: str | None = None,
    log: str = DEFAULT_LOG,
    only: str | None = None,
) -> str:
    """The hook script's text. ``only``: a shell glob; VMs whose name does not match start
    without asking vmwarden (a staged roll-out; tests gate only their own VMs). ``python``:
    the interpreter (default ``/usr/bin/python3``; must be root's end to end)."""
    if unreachable not in ("allow", "deny"):
        raise HookError(f"invalid --unreachable {unreachable!r} (valid: allow, deny)")
    if only is not None and not _GLOB.fullmatch(only):
        raise HookError(
            f"invalid --only {only!r}", hint="use letters, digits, '.', '_', '-', '*' and '?'"
        )
    select = f'case "$1" in {only}) ;; *) exit 0 ;; esac\n' if only else ""
    exe = python or SYSTEM_PYTHON
    q = shlex.quote
    source = Path(client.__file__).read_text(encoding="utf-8")
    return (
        "#!/bin/sh\n"
        f"{MARKER}: written by `vmwarden hook install`, removed by `vmwarden hook uninstall`.\n"
        "# libvirtd runs it as: qemu GUEST OPERATION SUB-OPERATION EXTRA, domain XML on stdin.\n"
        "# Only 'prepare' (before a VM starts) asks vmwarden; every other operation passes\n"
        "# at once: a failing 'reconnect' would kill running VMs, and 'migrate'/'restore'\n"
        "# read stdout as a new domain XML.\n"
        '[ "$2" = prepare ] || exit 0\n'
        f"{select}"
        f'exec {q(exe)} -I -S -c {q(BOOT)} "$0" --socket {q(socket)} '
        f'--unreachable {q(unreachable)} --log {q(log)} -- "$@"\n'
        "exit 1\n"
        f"{PYTHON_PART}\n"
        f"{source}"
    )


def settings_of(text: str) -> dict[str, str]:
    """The socket / unreachable / log / python an installed hook was written with."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith('case "$1" in '):
            out["only"] = line.split()[3].rstrip(")")
        if line.startswith("exec "):
            words = shlex.split(line)
            out["python"] = words[1]
            for key in ("socket", "unreachable", "log"):
                flag = f"--{key}"
                if flag in words:
                    out[key] = words[words.index(flag) + 1]
    return out


def is_ours(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return MARKER in fh.read(4096)
    except OSError:
        return False


def install(
    *,
    socket: str,
    unreachable: str,
    path: Path = MAIN_HOOK,
    python: str | None = None,
    log: str = DEFAULT_LOG,
    only: str | None = None,
) -> bool:
    """Write the hook at ``path`` (atomically, 0755). Returns whether a hook of ours was
    replaced. A foreign file there is never touched."""
    if path.exists() and not is_ours(path):
        hint = (
            f"vmwarden never overwrites another hook; add vmwarden beside it with --drop-in "
            f"({DROP_IN}, run by libvirt >= 6.5 after the main script)"
            if path == MAIN_HOOK
            else "remove or rename that file first"
        )
        raise HookError(f"{path} exists and was not installed by vmwarden", hint=hint)
    replaced = path.exists()
    exe = python or SYSTEM_PYTHON
    text = render(socket=socket, unreachable=unreachable, python=exe, log=log, only=only)
    try:
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        check_hook_chain(shell=SHELL, python=exe, hook_dir=str(path.parent))
        fd, tmp = tempfile.mkstemp(prefix=".vmwarden-", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
            os.chown(tmp, 0, 0)
            os.chmod(tmp, 0o755)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        check_path(path)
    except UnsafePath as exc:
        raise HookError(f"refusing to install the hook: {exc}", hint=exc.hint) from None
    except OSError as exc:
        raise HookError(
            f"cannot write {path}: {exc.strerror}", hint="run `vmwarden hook install` as root"
        ) from None
    return replaced


def uninstall(path: Path = MAIN_HOOK) -> bool:
    """Remove the hook at ``path`` if it is ours. Returns whether a file was removed."""
    if not path.exists():
        return False
    if not is_ours(path):
        raise HookError(
            f"{path} was not installed by vmwarden; leaving it alone",
            hint="remove it by hand if it should go",
        )
    try:
        path.unlink()
    except OSError as exc:
        raise HookError(f"cannot remove {path}: {exc.strerror}", hint="run as root") from None
    return True


def status(path: Path = MAIN_HOOK) -> HookStatus:
    """What is at ``path``, whether libvirtd runs it, and whether it is still root's."""
    exists = path.exists()
    ours = exists and is_ours(path)
    text = path.read_text(errors="replace") if ours else ""
    settings = settings_of(text) if ours else {}
    pid = libvirtd_pid()
    sees: bool | None = None
    why = ""
    if exists and pid is not None and runs_hooks_at(path, HOOK_DIR):
        started = process_start(pid)
        reload = reloaded_since_start(pid)
        if started is not None and path.stat().st_mtime < started:
            sees, why = True, "the hook predates its start"
        elif reload and reload.get("qemu_hooks") and reload.get("hook_dir") == str(HOOK_DIR):
            at = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(reload["at"])))
            sees, why = True, f"reloaded by vmwarden at {at} with a qemu hook in place"
    unsafe = _unsafe(path, text, settings) if ours else None
    return HookStatus(path, exists, ours, settings, pid, sees, why, unsafe)


def _unsafe(path: Path, text: str, settings: dict[str, str]) -> str | None:
    if PYTHON_PART not in text:
        return "written by an older vmwarden (it runs vmwarden's own code as root): reinstall it"
    try:
        check_hook_chain(
            shell=SHELL, python=settings.get("python", SYSTEM_PYTHON), hook_dir=str(path.parent)
        )
        check_path(path)
    except UnsafePath as exc:
        return str(exc)
    return None


def serves(uri: str) -> bool:
    """Whether this machine's hook gates the VMs of ``uri``: a libvirt URI of the daemon on
    this machine (``qemu:///system``, ``qemu+unix``); not another host's, nor a test driver's
    (which runs no hooks)."""
    parts = urlsplit(uri)
    return parts.scheme in ("qemu", "qemu+unix") and parts.hostname in (None, "localhost")


#: Neutral names for ``connectors.capabilities.StartHook`` (``vmwarden hook``).
reload_daemon = reload_libvirtd
restart_daemon = restart_libvirtd

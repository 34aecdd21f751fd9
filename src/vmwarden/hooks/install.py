"""Install, remove and describe the libvirt qemu hook, and restart libvirtd so it sees it.

The installed file is a few lines of ``/bin/sh`` that exit 0 for every operation but
``prepare`` and otherwise exec ``python -I -m vmwarden.hooks.qemu`` from the interpreter that
installed it. A marker line makes it ours: ``uninstall`` removes only a file carrying it, and
``install`` never overwrites a hook someone else wrote. Such a host can take ours as a drop-in,
``/etc/libvirt/hooks/qemu.d/vmwarden`` (libvirt >= 6.5 runs ``qemu.d/*`` after the main
script; any of them failing refuses the start).

libvirtd decides whether a qemu hook exists when it starts *and when it reloads*
(libvirt's ``virHookCall`` re-runs ``virHookInitialize`` on the daemon's SIGHUP reload), then
runs the file by path at each call. So after the first install libvirtd must be reloaded
(``reload_libvirtd``: SIGHUP, nothing stops) or restarted (``restart_libvirtd``); removing the
file needs neither (a missing hook is simply not run).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from vmwarden.errors import VmwardenError

HOOK_DIR = Path("/etc/libvirt/hooks")
MAIN_HOOK = HOOK_DIR / "qemu"
DROP_IN = HOOK_DIR / "qemu.d" / "vmwarden"
MARKER = "# vmwarden-managed-hook v1"
PIDFILES = (Path("/run/libvirtd.pid"), Path("/var/run/libvirtd.pid"))
DEFAULT_LOG = "/var/log/vmwarden/hook.log"
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
    # True: the file predates libvirtd's start, so libvirtd runs it. None: cannot tell (the
    # file is newer: libvirtd runs it only if some qemu hook existed when it started).
    libvirtd_sees_it: bool | None


def render(
    *,
    socket: str,
    unreachable: str,
    python: str | None = None,
    log: str = DEFAULT_LOG,
    only: str | None = None,
) -> str:
    """The hook script's text. ``only``: a shell glob; VMs whose name does not match start
    without asking vmwarden (a staged roll-out; tests gate only their own VMs)."""
    if unreachable not in ("allow", "deny"):
        raise HookError(f"invalid --unreachable {unreachable!r} (valid: allow, deny)")
    if only is not None and not _GLOB.fullmatch(only):
        raise HookError(
            f"invalid --only {only!r}", hint="use letters, digits, '.', '_', '-', '*' and '?'"
        )
    select = f'case "$1" in {only}) ;; *) exit 0 ;; esac\n' if only else ""
    exe = python or sys.executable
    q = shlex.quote
    return (
        "#!/bin/sh\n"
        f"{MARKER}: written by `vmwarden hook install`, removed by `vmwarden hook uninstall`.\n"
        "# libvirtd runs it as: qemu GUEST OPERATION SUB-OPERATION EXTRA, domain XML on stdin.\n"
        "# Only 'prepare' (before a VM starts) asks vmwarden; every other operation passes\n"
        "# at once: a failing 'reconnect' would kill running VMs, and 'migrate'/'restore'\n"
        "# read stdout as a new domain XML.\n"
        '[ "$2" = prepare ] || exit 0\n'
        f"{select}"
        f"exec {q(exe)} -I -m vmwarden.hooks.qemu --socket {q(socket)} "
        f'--unreachable {q(unreachable)} --log {q(log)} -- "$@"\n'
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
    text = render(socket=socket, unreachable=unreachable, python=python, log=log, only=only)
    try:
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".vmwarden-", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
            os.chmod(tmp, 0o755)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
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
    exists = path.exists()
    ours = exists and is_ours(path)
    settings = settings_of(path.read_text(errors="replace")) if ours else {}
    pid = libvirtd_pid()
    sees: bool | None = None
    if exists and pid is not None:
        started = _process_start(pid)
        if started is not None and path.stat().st_mtime < started:
            sees = True
    return HookStatus(path, exists, ours, settings, pid, sees)


def libvirtd_pid() -> int | None:
    """libvirtd's pid from its pidfile, checked against /proc (a stale pidfile is None)."""
    for pidfile in PIDFILES:
        try:
            pid = int(pidfile.read_text().strip())
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except (OSError, ValueError):
            continue
        if comm == "libvirtd":
            return pid
    return None


def _process_start(pid: int) -> float | None:
    """A process's start as a Unix time (from /proc/PID/stat and the boot time)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[19])  # field 22 overall; fields[0] is field 3 (state)
        btime = next(
            int(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return btime + ticks / os.sysconf("SC_CLK_TCK")


def reload_libvirtd(uri: str = "qemu:///system", timeout: float = 30.0) -> None:
    """Make libvirtd look for hooks again: SIGHUP (no client or VM is disturbed).

    libvirtd rescans in its reload thread just after the signal; this returns once libvirtd
    answers again. Through systemd when it manages libvirtd.
    """
    if Path("/run/systemd/system").is_dir() and shutil.which("systemctl"):
        subprocess.run(["systemctl", "reload", "libvirtd"], check=True, timeout=timeout)
    else:
        pid = libvirtd_pid()
        if pid is None:
            raise HookError(
                "libvirtd is not running (no live pid in /run/libvirtd.pid)",
                hint="start libvirtd: it finds the hook as it starts",
            )
        os.kill(pid, signal.SIGHUP)
    _wait_answering(uri, timeout)


def restart_libvirtd(uri: str = "qemu:///system", timeout: float = 60.0) -> None:
    """Restart libvirtd (running VMs keep running; libvirtd reconnects to them).

    Through systemd when it manages libvirtd, else by signalling the pid in libvirtd's
    pidfile (never by process name) and starting ``libvirtd -d`` again. Returns once
    ``virsh -c URI version`` answers.
    """
    if Path("/run/systemd/system").is_dir() and shutil.which("systemctl"):
        subprocess.run(["systemctl", "restart", "libvirtd"], check=True, timeout=timeout)
    else:
        pid = libvirtd_pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while Path(f"/proc/{pid}").exists():
                if time.monotonic() > deadline:
                    raise HookError(f"libvirtd (pid {pid}) did not stop within {timeout:g}s")
                time.sleep(0.05)
        subprocess.run(["libvirtd", "-d"], check=True, timeout=timeout)
    _wait_answering(uri, timeout)


def _wait_answering(uri: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        probe = subprocess.run(
            ["virsh", "-c", uri, "version"], capture_output=True, check=False, timeout=timeout
        )
        if probe.returncode == 0:
            return
        time.sleep(0.1)
    raise HookError(f"libvirtd did not answer on {uri} within {timeout:g}s")

"""libvirtd as the hook sees it: its pid, its start, reloading or restarting it, and whether it
looked for hooks since a given hook was put in place.

libvirtd decides whether any qemu hook exists (the main ``qemu`` file or an executable
``qemu.d/*`` entry) when it starts and when it reloads (libvirt's ``virHookCall`` re-runs
``virHookInitialize`` at the daemon's SIGHUP reload), then runs the files by path at each
call. So it runs our hook if a qemu hook existed at its last scan.

A reload is asynchronous: the signal makes libvirtd's main loop start a ``daemon-reload``
thread, which rescans the hooks and reloads the drivers, while ``reload`` itself returns at
once (``systemctl reload`` too: ``ExecReload`` is a ``kill -HUP``). :func:`reload_libvirtd`
returns only after libvirtd has answered a client since the signal (so its main loop has
dispatched it) and no ``daemon-reload`` thread is left; it then records the reload
(:data:`RELOADS`) so that ``hook status`` can say libvirtd uses a hook written after it
started, instead of contradicting the install that just reloaded it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from vmwarden.errors import VmwardenError

PIDFILES = (Path("/run/libvirtd.pid"), Path("/var/run/libvirtd.pid"))
#: The last reload ``vmwarden hook`` made: ``{"pid", "start", "at", "qemu_hooks",
#: "hook_dir"}``. Under
#: /run: it describes one boot's libvirtd and must not outlive it.
RELOADS = Path("/run/vmwarden/libvirtd-reload.json")
RELOAD_THREAD = "daemon-reload"


class LibvirtdError(VmwardenError):
    """libvirtd could not be reloaded or restarted."""

    exit_code = 2


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


def _start_ticks(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat: with the pid, names one process for good."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[19])  # fields[0] is field 3 (state)
    except (OSError, ValueError, IndexError):
        return None


def process_start(pid: int) -> float | None:
    """A process's start as a Unix time (from /proc/PID/stat and the boot time)."""
    ticks = _start_ticks(pid)
    try:
        btime = next(
            int(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return None if ticks is None else btime + ticks / os.sysconf("SC_CLK_TCK")


def qemu_hooks_present(hook_dir: Path) -> bool:
    """What libvirtd's scan looks for: an executable ``qemu`` or ``qemu.d/*`` file."""
    main = hook_dir / "qemu"
    if main.is_file() and os.access(main, os.X_OK):
        return True
    try:
        entries = list((hook_dir / "qemu.d").iterdir())
    except OSError:
        return False
    return any(p.is_file() and os.access(p, os.X_OK) for p in entries)


def runs_hooks_at(path: Path, hook_dir: Path) -> bool:
    """Whether libvirtd would run a qemu hook at ``path`` (the main one or a drop-in)."""
    return path == hook_dir / "qemu" or path.parent == hook_dir / "qemu.d"


def reloaded_since_start(pid: int) -> dict[str, object] | None:
    """The recorded reload of *this* libvirtd process (pid and start both match), if any."""
    try:
        record = json.loads(RELOADS.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict):
        return None
    if record.get("pid") != pid or record.get("start") != _start_ticks(pid):
        return None
    return record


def _record_reload(pid: int, hook_dir: Path) -> None:
    record = {
        "pid": pid,
        "start": _start_ticks(pid),
        "at": time.time(),
        "qemu_hooks": qemu_hooks_present(hook_dir),
        "hook_dir": str(hook_dir),
    }
    try:
        RELOADS.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".reload-", dir=RELOADS.parent)
        with os.fdopen(fd, "w") as fh:
            json.dump(record, fh)
        os.replace(tmp, RELOADS)
    except OSError:
        pass  # status then just cannot tell; the reload itself happened


def _systemd() -> bool:
    return Path("/run/systemd/system").is_dir() and shutil.which("systemctl") is not None


def _reload_threads(pid: int) -> int:
    count = 0
    for comm in Path(f"/proc/{pid}/task").glob("*/comm"):
        try:
            count += comm.read_text().strip() == RELOAD_THREAD
        except OSError:
            continue  # the thread just ended
    return count


def reload_libvirtd(
    uri: str = "qemu:///system", timeout: float = 30.0, hook_dir: Path = Path("/etc/libvirt/hooks")
) -> None:
    """Make libvirtd look for hooks again (SIGHUP: no client or VM is disturbed) and return
    once it has (see the module docstring). Through systemd when it manages libvirtd."""
    pid = libvirtd_pid()
    if _systemd():
        subprocess.run(["systemctl", "reload", "libvirtd"], check=True, timeout=timeout)
        pid = libvirtd_pid()
    else:
        if pid is None:
            raise LibvirtdError(
                "libvirtd is not running (no live pid in /run/libvirtd.pid)",
                hint="start libvirtd: it finds the hook as it starts",
            )
        os.kill(pid, signal.SIGHUP)
    _wait_answering(uri, timeout)
    if pid is None:
        return
    deadline = time.monotonic() + timeout
    while _reload_threads(pid):
        if time.monotonic() > deadline:
            raise LibvirtdError(f"libvirtd (pid {pid}) did not finish reloading in {timeout:g}s")
        time.sleep(0.01)
    _record_reload(pid, hook_dir)


def restart_libvirtd(uri: str = "qemu:///system", timeout: float = 60.0) -> None:
    """Restart libvirtd (running VMs keep running; libvirtd reconnects to them).

    Through systemd when it manages libvirtd, else by signalling the pid in libvirtd's
    pidfile (never by process name) and starting ``libvirtd -d`` again. Returns once
    ``virsh -c URI version`` answers.
    """
    if _systemd():
        subprocess.run(["systemctl", "restart", "libvirtd"], check=True, timeout=timeout)
    else:
        pid = libvirtd_pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while Path(f"/proc/{pid}").exists():
                if time.monotonic() > deadline:
                    raise LibvirtdError(f"libvirtd (pid {pid}) did not stop within {timeout:g}s")
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
    raise LibvirtdError(f"libvirtd did not answer on {uri} within {timeout:g}s")

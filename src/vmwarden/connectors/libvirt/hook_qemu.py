"""What ``/etc/libvirt/hooks/qemu`` runs at ``prepare``: ask ``vmwarden watch`` whether a VM
may start, and tell libvirtd through the exit status.

libvirtd runs the hook as ``qemu GUEST OPERATION SUB-OPERATION EXTRA`` with the domain XML on
stdin. At ``prepare`` (before it labels or starts anything) a non-zero exit refuses the start,
and libvirt puts the hook's stderr at the end of the error the user sees (seen with
libvirt 9.0; ``virDomainCreate`` raises the same text)::

    error: Failed to start domain 'web01'
    error: Hook script execution failed: internal error: Child process (LC_ALL=C PATH=...
    HOME=/root /etc/libvirt/hooks/qemu web01 prepare begin -) unexpected exit status 1:
    vmwarden: VM 'web01' refused by policy gate: not-approved-template (disk vda, root ...)

Every other operation exits 0 at once (the installed shell script already filters them): a
failure at ``reconnect`` would make libvirtd kill a running VM, and at ``migrate``/``restore``
libvirt reads stdout as a replacement XML, so nothing is ever printed on stdout.

When the service cannot be reached (not running, timed out, answered garbage) the hook does
what ``--unreachable`` says (``allow`` or ``deny``) and logs it to syslog and ``--log``.

Standard library only, and nothing at import time beyond it: this runs on every VM start,
and ``vmwarden hook install`` copies this very source into the hook file, run as root by the
system interpreter (``-I -S``), where no vmwarden module can be imported.
Protocol (kept in step with ``vmwarden.engine.admission``): send the XML, shut the write side,
read one JSON line ``{"decision": "allow"|"deny", "reason": ..., "hold": bool}``.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import sys
import time

DEFAULT_SOCKET = "/run/vmwarden/admission.sock"
DEFAULT_LOG = "/var/log/vmwarden/hook.log"
MAX_REQUEST = 4 * 1024 * 1024
MAX_ANSWER = 64 * 1024
TIMEOUT = 5.0
EXIT_DENY = 1


class Unreachable(Exception):
    """The admission service did not give a usable answer."""


def ask(path: str, xml: bytes, timeout: float = TIMEOUT) -> dict[str, object]:
    """Send ``xml`` to the admission socket and return its decoded answer."""
    deadline = time.monotonic() + timeout
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except OSError as exc:
            raise Unreachable(f"cannot connect to {path}: {exc.strerror or exc}") from None
        if os.geteuid() == 0 and _peer_uid(sock) != 0:
            raise Unreachable(f"{path} is not served by root; not trusting its answer")
        try:
            sock.sendall(xml)
            sock.shutdown(socket.SHUT_WR)
        except BrokenPipeError:
            pass  # the service answered early (e.g. request too large): read what it said
        except OSError as exc:
            raise Unreachable(f"cannot send to {path}: {exc.strerror or exc}") from None
        data = b""
        while not data.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0:
                raise Unreachable(f"no answer from {path} within {timeout:g}s")
            sock.settimeout(left)
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                raise Unreachable(f"no answer from {path} within {timeout:g}s") from None
            except OSError as exc:
                raise Unreachable(f"reading from {path}: {exc.strerror or exc}") from None
            if not chunk:
                break
            data += chunk
            if len(data) > MAX_ANSWER:
                raise Unreachable(f"answer from {path} is too large")
    finally:
        sock.close()
    try:
        answer = json.loads(data)
    except ValueError:
        raise Unreachable(f"unreadable answer from {path}: {data[:80]!r}") from None
    if not isinstance(answer, dict) or answer.get("decision") not in ("allow", "deny"):
        raise Unreachable(f"unexpected answer from {path}: {data[:80]!r}")
    return answer


def _peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


def log(message: str, logfile: str | None, *, error: bool = False) -> None:
    """To syslog (daemon facility) and to ``logfile``; a logging failure never blocks a start."""
    try:
        import syslog

        syslog.openlog("vmwarden-hook", syslog.LOG_PID, syslog.LOG_DAEMON)
        syslog.syslog(syslog.LOG_WARNING if error else syslog.LOG_INFO, message)
    except OSError:
        pass
    if not logfile:
        return
    try:
        os.makedirs(os.path.dirname(logfile) or ".", mode=0o750, exist_ok=True)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        fd = os.open(logfile, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o640)
        try:
            os.write(fd, f"{stamp} vmwarden-hook[{os.getpid()}]: {message}\n".encode())
        finally:
            os.close(fd)
    except OSError:
        pass


def _options(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """``--socket S --unreachable allow|deny --log F --timeout T [--] GUEST OP SUB EXTRA``."""
    opts = {"socket": DEFAULT_SOCKET, "unreachable": "allow", "log": DEFAULT_LOG, "timeout": ""}
    args: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            args += argv[i + 1 :]
            break
        if arg.startswith("--") and arg[2:] in opts and i + 1 < len(argv):
            opts[arg[2:]] = argv[i + 1]
            i += 2
            continue
        args.append(arg)
        i += 1
    return opts, args


def main(argv: list[str] | None = None) -> int:
    opts, args = _options(sys.argv[1:] if argv is None else argv)
    if len(args) < 2 or args[1] != "prepare":
        return 0
    guest = args[0]
    logfile = opts["log"] or None
    try:
        timeout = float(opts["timeout"]) if opts["timeout"] else TIMEOUT
    except ValueError:
        timeout = TIMEOUT
    xml = sys.stdin.buffer.read(MAX_REQUEST + 1)
    try:
        answer = ask(opts["socket"], xml, timeout)
    except Unreachable as exc:
        return _unreachable(guest, str(exc), opts["unreachable"], logfile)
    reason = str(answer.get("reason") or "")
    if answer["decision"] == "deny":
        message = reason or f"vmwarden: VM {guest!r} refused by policy"
        log(f"denied {guest}: {message}", logfile, error=True)
        sys.stderr.write(message + "\n")
        return EXIT_DENY
    if answer.get("hold"):
        log(f"allowed {guest} on hold (watch quarantines it at start): {reason}", logfile)
    return 0


def _unreachable(guest: str, why: str, choice: str, logfile: str | None) -> int:
    if choice == "deny":
        message = (
            f"vmwarden: could not reach the admission service ({why}); start of {guest!r} "
            "refused (hook installed with --unreachable deny): is `vmwarden watch` running?"
        )
        log(message, logfile, error=True)
        sys.stderr.write(message + "\n")
        return EXIT_DENY
    log(
        f"could not reach the admission service ({why}); start of {guest!r} allowed "
        "(hook installed with --unreachable allow)",
        logfile,
        error=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

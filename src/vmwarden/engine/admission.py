"""Admission at power-on: a Unix-socket service the libvirt qemu hook asks "may this VM start?".

libvirtd runs ``/etc/libvirt/hooks/qemu NAME prepare begin -`` as root before it starts a VM,
with the full domain XML on stdin, and refuses the start when the hook exits non-zero (see
``connectors.libvirt.hook_qemu``). The hook sends that XML here and waits for one JSON line::

    {"decision": "allow" | "deny", "reason": "...", "hold": false, ...}

Wire protocol (kept in step with ``connectors.libvirt.hook_qemu``, which is stdlib-only): the client
writes the domain XML (at most ``MAX_REQUEST`` bytes) and shuts its write side; the server
answers one JSON object terminated by a newline and closes. Only root peers are served
(``SO_PEERCRED``), because only libvirtd's hook has any business here and a decision tells
what the policy thinks of a VM.

The decision itself is a plain callable (``decide(xml) -> Decision``), run in a worker thread
of the server's own pool with a deadline; ``Decider`` (in ``admission_decider``) is the
default one, answering from the store and the XML alone. It must never call libvirt:
libvirtd holds the domain's lock while the hook runs, so a call back for that domain would
deadlock the start.

Policy ``gate.hold`` outcomes are *allowed* here (the VM starts) and flagged (``hold: true``,
and ``Decider.held``): the watch daemon quarantines held VMs as they start. Only ``gate.deny``
refuses a start.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import os
import socket
import stat
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from vmwarden.errors import VmwardenError

log = logging.getLogger(__name__)

DEFAULT_SOCKET = "/run/vmwarden/admission.sock"
MAX_REQUEST = 4 * 1024 * 1024  # a domain XML is a few KiB; 4 MiB is generous
READ_TIMEOUT = 1.0  # seconds a client has to send its whole request
DECIDE_TIMEOUT = 1.5  # seconds a decision may take (it never hashes: admission_hasher)
# Every answer is on its way within READ_TIMEOUT + DECIDE_TIMEOUT = 2.5 s of the request,
# half the hook's own 5 s wait: the hook hears *why* it was refused, never "unreachable".
ROOT_ONLY = frozenset({0})
PING = b"PING\n"  # `vmwarden hook status` asks this: answered "pong", never judged

Verdict = Literal["allow", "deny"]


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to one hook call. ``hold``: allowed, but the watch daemon must quarantine
    the VM as it starts (the policy's ``gate.hold`` fired)."""

    decision: Verdict
    reason: str = ""
    hold: bool = False
    name: str | None = None
    uuid: str | None = None
    known: bool | None = None  # the store knew this VM before it started
    reasons: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "reason": self.reason,
            "hold": self.hold,
            "name": self.name,
            "uuid": self.uuid,
            "known": self.known,
            "reasons": self.reasons,
        }

    def to_wire(self) -> bytes:
        return json.dumps(self.to_dict(), default=str, separators=(",", ":")).encode() + b"\n"


Decide = Callable[[str], Decision]


class AdmissionError(VmwardenError):
    """The admission socket could not be set up (path in use, no permission)."""

    exit_code = 2  # like a busy --listen port: fix the command line or the host, then rerun


class AdmissionServer:
    """Serves admission decisions on a Unix socket (mode 0600; root peers only by default).

    Use from asyncio (``await server.start()`` … ``await server.close()``, or ``async with``),
    or standalone in a thread of its own (``server.start_in_thread()`` … ``server.stop()``),
    as the watch daemon does: its answers then never wait for the daemon's loop, its HTTP
    server or their thread pools.

    Example::

        server = AdmissionServer(DEFAULT_SOCKET, Decider(store, policy))
        await server.start()
    """

    def __init__(
        self,
        socket_path: str | os.PathLike[str] = DEFAULT_SOCKET,
        decide: Decide | None = None,
        *,
        allowed_uids: frozenset[int] = ROOT_ONLY,
        max_request: int = MAX_REQUEST,
        read_timeout: float = READ_TIMEOUT,
        decide_timeout: float = DECIDE_TIMEOUT,
        workers: int = 4,
    ) -> None:
        if decide is None:
            raise TypeError("AdmissionServer needs a decide callable (e.g. a Decider)")
        self.path = Path(socket_path)
        self.decide = decide
        self.allowed_uids = allowed_uids
        self.max_request = max_request
        self.read_timeout = read_timeout
        self.decide_timeout = decide_timeout
        self.counts: dict[str, int] = {
            "allow": 0,
            "deny": 0,
            "hold": 0,
            "refused_peer": 0,
            "bad_request": 0,
            "errors": 0,
        }
        self._workers = workers
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._server: asyncio.AbstractServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the socket (replacing a stale one, never a live one or a non-socket file)."""
        self._prepare_path()
        self._pool = concurrent.futures.ThreadPoolExecutor(
            self._workers, thread_name_prefix="vmwarden-admission"
        )
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # fchmod before bind: the socket file is created 0600 (Linux applies the inode
            # mode of the unbound socket), so there is no window where others could connect.
            os.fchmod(sock.fileno(), 0o600)
            sock.bind(str(self.path))
            os.chmod(self.path, 0o600)
            sock.listen(64)
        except OSError as exc:
            sock.close()
            raise AdmissionError(
                f"cannot listen on {self.path}: {exc.strerror}",
                hint="run the watch daemon as root, or pick another path with --admission-socket",
            ) from None
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        self._server = await asyncio.start_unix_server(self._handle, sock=sock)
        log.info("admission service listening on %s", self.path)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.lstat(self.path).st_mode):
                os.unlink(self.path)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        if self._stopped is not None:
            self._stopped.set()

    async def __aenter__(self) -> AdmissionServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def start_in_thread(self) -> AdmissionServer:
        """Run on a private event loop in a daemon thread; returns once the socket listens."""
        ready = threading.Event()
        failure: list[BaseException] = []

        async def main() -> None:
            try:
                await self.start()
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                return
            ready.set()
            if self._stopped is not None:
                await self._stopped.wait()

        self._thread = threading.Thread(
            target=asyncio.run, args=(main(),), name="vmwarden-admission", daemon=True
        )
        self._thread.start()
        ready.wait()
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        """Stop a server started with :meth:`start_in_thread` (socket file removed)."""
        if self._loop is None or self._thread is None:
            return
        with contextlib.suppress(RuntimeError):  # loop already gone
            asyncio.run_coroutine_threadsafe(self.close(), self._loop).result(5)
        self._thread.join(5)
        self._thread = None

    def _prepare_path(self) -> None:
        parent = self.path.parent
        if not parent.exists():
            parent.mkdir(mode=0o700, parents=True)
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise AdmissionError(
                f"{self.path} exists and is not a socket",
                hint="remove it or choose another admission socket path",
            )
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(0.5)
        try:
            probe.connect(str(self.path))
        except OSError:
            os.unlink(self.path)  # stale: nobody listens
            return
        finally:
            probe.close()
        raise AdmissionError(
            f"another process already serves {self.path}",
            hint="is another `vmwarden watch` running? stop it, or use another socket path",
        )

    # -- one connection ----------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            uid = _peer_uid(writer)
            if uid not in self.allowed_uids:
                self.counts["refused_peer"] += 1
                log.warning("admission: refused a client with uid %s", uid)
                return
            answer = await self._answer(reader)
            writer.write(answer.to_wire())
            await asyncio.wait_for(writer.drain(), self.read_timeout)
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            log.info("admission: client went away: %s", exc)
        except Exception:  # the service's boundary: one bad request never stops it
            self.counts["errors"] += 1
            log.exception("admission: unexpected error while answering")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader) -> Decision:
        try:
            body = await asyncio.wait_for(self._read(reader), self.read_timeout)
        except TimeoutError:
            self.counts["bad_request"] += 1
            return Decision("deny", f"vmwarden: request not received within {self.read_timeout}s")
        if body is None:
            self.counts["bad_request"] += 1
            limit = self.max_request // (1024 * 1024)
            return Decision("deny", f"vmwarden: domain XML larger than {limit} MiB")
        if body == PING:
            return Decision("allow", "pong")
        try:
            xml = body.decode("utf-8")
        except UnicodeDecodeError:
            self.counts["bad_request"] += 1
            return Decision("deny", "vmwarden: the domain XML is not UTF-8 text")
        decision = await self._decide(xml)
        self.counts[decision.decision] += 1
        if decision.hold:
            self.counts["hold"] += 1
        return decision

    async def _read(self, reader: asyncio.StreamReader) -> bytes | None:
        """The whole request, or None when it exceeds ``max_request``."""
        chunks: list[bytes] = []
        size = 0
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > self.max_request:
                return None
            chunks.append(chunk)

    async def _decide(self, xml: str) -> Decision:
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._pool, self.decide, xml)
        try:
            return await asyncio.wait_for(future, self.decide_timeout)
        except TimeoutError:
            self.counts["errors"] += 1
            return Decision(
                "deny",
                f"vmwarden could not decide within {self.decide_timeout:g}s "
                "(the store busy?); try again shortly",
            )
        except Exception as exc:  # decide is a boundary too: record, refuse (unknown ≠ ok)
            self.counts["errors"] += 1
            log.exception("admission: decide failed")
            return Decision("deny", f"vmwarden could not judge this VM: {exc}")


def _peer_uid(writer: asyncio.StreamWriter) -> int | None:
    sock = writer.get_extra_info("socket")
    if sock is None:
        return None
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid

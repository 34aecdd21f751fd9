"""``InspectorPool``: guest inspection in long-lived, confined worker processes.

Why a pool: dissect.target spends ~1 s importing its plugins in a new process and ~0.1 s per
image after that, so each worker is started once and serves many images. Why separate
processes: a disk image is hostile input parsed by a large third-party library; a worker that
hangs, spins or balloons is killed and replaced, and the caller gets an
:class:`~vmwarden.errors.InspectError` (an ``uninspectable`` finding), never a crash.

The sandbox, per worker (see :mod:`vmwarden.inspect.worker`):

- the parent (this process) resolves the backing chain inside ``allowed_dirs`` and opens the
  image files; the worker gets only their descriptors (``SCM_RIGHTS``), never a path;
- when the parent is root the worker runs as ``nobody`` (``user=``), with no supplementary
  groups and ``no_new_privs`` — it can read the images only through the passed descriptors,
  so images need not be readable by that user;
- started isolated (``python -I``, cwd ``/``, a scrubbed environment): the parent's cwd and
  ``PYTHONPATH`` are never on its ``sys.path``;
- when the parent is root, its own network namespace (no network at all);
- ``RLIMIT_AS`` = ``memory_mb``; ``RLIMIT_CPU`` re-armed to ``cpu_seconds`` per image;
  ``RLIMIT_NOFILE`` bounded;
- an audit hook refuses any open of a host path outside the installation's library
  directories, network sockets and starting programs;
- a wall ``timeout`` per image, enforced here: the worker is killed (SIGKILL) and replaced.

Example::

    with InspectorPool(allowed_dirs=["/var/lib/libvirt/images"], fingerprint_key=key) as pool:
        results = pool.inspect_many(paths, on_done=lambda path, result: bar.advance())
"""

from __future__ import annotations

import contextlib
import os
import pwd
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any, Self

from vmwarden.errors import InspectError
from vmwarden.inspect import wire
from vmwarden.inspect.opener import open_disk
from vmwarden.inspect.served import LayerServer
from vmwarden.model import GuestFacts
from vmwarden.model.ranged import RangedReader

STARTUP_TIMEOUT = 60.0
#: Run with ``python -I -B -c BOOT ROOT FD``: put ``ROOT`` (where this vmwarden lives) first
#: on the isolated ``sys.path``, so the worker runs the very code the parent runs.
BOOT = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from vmwarden.inspect.worker import main; sys.exit(main(sys.argv[1:]))"
)
#: The directory holding the ``vmwarden`` package this process imported.
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OnDone = Callable[[str, "GuestFacts | InspectError"], None]


class _Worker:
    """One child process and the parent's end of its socket."""

    def __init__(self, config: dict[str, Any], *, env: dict[str, str] | None = None) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock = parent
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-B", "-c", BOOT, PACKAGE_ROOT, str(child.fileno())],
                pass_fds=(child.fileno(),),
                cwd="/",
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=None if os.environ.get("VMWARDEN_INSPECT_DEBUG") else subprocess.DEVNULL,
                env=env,
                close_fds=True,
                start_new_session=True,  # a Ctrl-C to the CLI is handled by the parent only
            )
        finally:
            child.close()
        self.info: dict[str, Any] = {}
        try:
            wire.send(self.sock, config)
            self.info = self.request(None, [], STARTUP_TIMEOUT, what="worker start-up")
        except BaseException:
            self.kill()
            raise
        if not self.info.get("ready"):
            self.kill()
            raise InspectError(f"inspection worker failed to start: {self.info}")

    def request(
        self, message: dict[str, Any] | None, fds: list[int], timeout: float, *, what: str
    ) -> dict[str, Any]:
        """Send ``message`` (unless ``None``) and wait up to ``timeout`` s for the answer."""
        deadline = time.monotonic() + timeout
        try:
            if message is not None:
                wire.send(self.sock, message, fds)
        except OSError:
            raise InspectError(f"inspection worker gone: {self.exit_reason()}") from None
        reader = wire.Reader()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                raise InspectError(f"{what} timed out after {timeout:g}s")
            ready, _, _ = select.select([self.sock], [], [], left)
            if not ready:
                continue
            try:
                data = self.sock.recv(1024 * 1024)
            except OSError:
                data = b""
            if not data:
                raise InspectError(f"inspection worker died: {self.exit_reason()}")
            answer = reader.feed(data)
            if answer is not None:
                return answer

    def exit_reason(self) -> str:
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()
            return "stopped answering"
        if code < 0:
            sig = signal.Signals(-code)
            if sig == signal.SIGXCPU:
                return "CPU time limit exceeded"
            if sig == signal.SIGKILL:
                return "killed (SIGKILL; memory exhausted?)"
            return f"killed by {sig.name}"
        return f"exited with status {code}"

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        self.sock.close()

    def stop(self) -> None:
        """Ask politely (close the socket: the worker exits on EOF), then kill."""
        self.sock.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class InspectorPool:
    """Inspect disk images in sandboxed worker processes, ``workers`` at a time.

    Args:
        workers: most images inspected at once (default: the number of CPUs).
        timeout: wall seconds per image before its worker is killed and replaced.
        memory_mb: address-space limit of each worker.
        cpu_seconds: CPU seconds per image.
        allowed_dirs: directories backing files must lie in (``None``: no restriction —
            only for an image named by hand).
        fingerprint_key: the secret keying password-hash fingerprints
            (:meth:`vmwarden.store.facts.FactsCache.fingerprint_key`).
        user: the account workers run as when this process is root.
        test_hooks: test-only: image names starting ``hang-``/``spin-``/``oom-`` make the
            worker misbehave, to exercise the timeout and limits.
        handlers: request kinds of later layers → the module whose ``handle`` the worker
            calls for them (``vmwarden.scap.oval_worker.HANDLERS``); see :meth:`run`.
    """

    def __init__(
        self,
        workers: int | None = None,
        timeout: float = 60.0,
        memory_mb: int = 1024,
        cpu_seconds: int = 120,
        allowed_dirs: Iterable[str | os.PathLike[str]] | None = None,
        fingerprint_key: bytes = b"",
        *,
        user: str = "nobody",
        test_hooks: bool = False,
        handlers: Mapping[str, str] | None = None,
    ) -> None:
        if len(fingerprint_key) < 16:
            raise InspectError(
                "fingerprint_key must be a secret of at least 16 bytes",
                hint="use FactsCache(store).fingerprint_key()",
            )
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.timeout = timeout
        self.allowed_dirs = None if allowed_dirs is None else [os.fspath(d) for d in allowed_dirs]
        self._config: dict[str, Any] = {
            "fingerprint_key": fingerprint_key.hex(),
            "memory_mb": memory_mb,
            "cpu_seconds": cpu_seconds,
            "test_hooks": test_hooks,
            "handlers": dict(handlers or {}),
        }
        if os.geteuid() == 0:
            try:
                entry = pwd.getpwnam(user)
            except KeyError:
                raise InspectError(
                    f"user {user!r} for inspection workers does not exist",
                    hint="create it or pass user= an existing unprivileged account",
                ) from None
            self._config["uid"], self._config["gid"] = entry.pw_uid, entry.pw_gid
        self._env = self._worker_env()
        self._idle: list[_Worker] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(self.workers)
        self._closed = False
        self.started = 0  # workers started so far (replacements included)
        #: per image: ``bytes_read`` (by dissect), ``image_bytes`` (all layers), ``seconds``
        self.stats: dict[str, dict[str, Any]] = {}

    @staticmethod
    def _worker_env() -> dict[str, str]:
        """A few locale variables; ``-I`` ignores every ``PYTHON*`` one anyway."""
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TZ")}
        env["HOME"] = "/nonexistent"
        return env

    # -- public API --------------------------------------------------------------------------

    def inspect(self, path: str | os.PathLike[str], fmt: str | None = None) -> GuestFacts:
        """Facts of one image, read in a worker.

        Raises:
            InspectError: the image could not be inspected (the reason says why: backing file
                outside the allowed directories, corrupt, timed out, limits exceeded).
        """
        if self._closed:
            raise InspectError("inspector pool is closed")
        name = os.path.abspath(os.fspath(path))
        started = time.monotonic()
        with self._slots, open_disk(name, allowed_dirs=self.allowed_dirs, fmt=fmt) as disk:
            if disk.encrypted:
                facts = GuestFacts(image=name, encrypted=True)
                facts.errors.append("disk image is encrypted; guest contents not read")
                answer: dict[str, Any] = {"ok": True, "facts": facts.to_dict(), "stats": {}}
            else:
                request = {"image": name, "formats": [layer.format for layer in disk.layers]}
                answer = self._run(request, [layer.fd for layer in disk.layers])
            identity = disk.identity()
        if not answer.get("ok"):
            raise InspectError(f"cannot inspect {name}: {answer.get('error', 'unknown error')}")
        facts = GuestFacts.from_dict(answer["facts"])
        facts.identity = identity
        facts.seconds = round(time.monotonic() - started, 4)
        self.stats[name] = {**answer.get("stats", {}), "seconds": facts.seconds}
        return facts

    def run(
        self,
        path: str | os.PathLike[str],
        kind: str,
        payload: dict[str, Any],
        fmt: str | None = None,
    ) -> dict[str, Any]:
        """A request of another kind (one of ``handlers``) on one image, in a worker, under
        the same confinement and limits as :meth:`inspect`; the handler's answer.

        Raises:
            InspectError: the image could not be opened or the handler failed.
        """
        if self._closed:
            raise InspectError("inspector pool is closed")
        name = os.path.abspath(os.fspath(path))
        with self._slots, open_disk(name, allowed_dirs=self.allowed_dirs, fmt=fmt) as disk:
            if disk.encrypted:
                raise InspectError(f"{name}: disk image is encrypted; guest contents not read")
            formats = [layer.format for layer in disk.layers]
            request = {**payload, "image": name, "formats": formats, "kind": kind}
            answer = self._run(request, [layer.fd for layer in disk.layers])
        if not answer.get("ok"):
            raise InspectError(f"cannot evaluate {name}: {answer.get('error', 'unknown error')}")
        return answer

    def inspect_ranged(
        self, name: str, readers: list[RangedReader], formats: list[str], *, encrypted: bool
    ) -> GuestFacts:
        """Facts of a disk whose layers are not files here (another host's volumes).

        The worker gets a socket per layer instead of a descriptor and asks this process for
        byte ranges (:class:`~vmwarden.inspect.served.LayerServer`); it opens nothing.

        Raises:
            InspectError: as :meth:`inspect`; a remote read error is the reason given.
        """
        if self._closed:
            raise InspectError("inspector pool is closed")
        started = time.monotonic()
        errors: list[str] = []
        with self._slots:
            if encrypted:
                facts = GuestFacts(image=name, encrypted=True)
                facts.errors.append("disk image is encrypted; guest contents not read")
                answer: dict[str, Any] = {"ok": True, "facts": facts.to_dict(), "stats": {}}
            else:
                request = {"image": name, "formats": formats, "served": [r.size for r in readers]}
                with LayerServer(readers) as server:
                    answer = self._run(request, server.worker_fds())
                errors = server.errors
        if not answer.get("ok"):
            reason = errors[0] if errors else answer.get("error", "unknown error")
            raise InspectError(f"cannot inspect {name}: {reason}")
        facts = GuestFacts.from_dict(answer["facts"])
        facts.identity = {"layers": [r.identity() for r in readers]}
        facts.seconds = round(time.monotonic() - started, 4)
        self.stats[name] = {**answer.get("stats", {}), "seconds": facts.seconds}
        return facts

    def inspect_many(
        self, paths: Iterable[str | os.PathLike[str]], on_done: OnDone | None = None
    ) -> dict[str, GuestFacts | InspectError]:
        """Inspect ``paths`` in parallel (at most ``workers`` at once).

        Returns path (as given) → facts, or the :class:`InspectError` that made it
        uninspectable. ``on_done(path, result)`` is called as each finishes, from a pool
        thread (keep it short; a progress bar's ``advance`` is fine).
        """
        names = [os.fspath(p) for p in paths]
        results: dict[str, GuestFacts | InspectError] = {}

        def one(name: str) -> None:
            result: GuestFacts | InspectError
            try:
                result = self.inspect(name)
            except InspectError as exc:
                result = exc
            results[name] = result
            if on_done is not None:
                on_done(name, result)

        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="inspect") as ex:
            for future in [ex.submit(one, n) for n in dict.fromkeys(names)]:
                future.result()
        return results

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- workers -----------------------------------------------------------------------------

    def _checkout(self) -> _Worker:
        with self._lock:
            while self._idle:
                worker = self._idle.pop()
                if worker.alive:
                    return worker
                worker.kill()
            self.started += 1
        return _Worker(self._config, env=self._env)

    def _checkin(self, worker: _Worker) -> None:
        with self._lock:
            if not self._closed and worker.alive:
                self._idle.append(worker)
                return
        worker.stop()

    def _run(self, request: dict[str, Any], fds: list[int]) -> dict[str, Any]:
        worker = self._checkout()
        try:
            answer = worker.request(request, fds, self.timeout, what="inspection")
        except InspectError as exc:
            worker.kill()  # timed out or died: never reused
            return {"ok": False, "error": str(exc)}
        except BaseException:
            worker.kill()
            raise
        if answer.get("restart"):
            worker.kill()
        else:
            self._checkin(worker)
        return answer

    @property
    def worker_pids(self) -> list[int]:
        """Process ids of the idle workers (for tests and diagnostics)."""
        with self._lock:
            return [w.proc.pid for w in self._idle if w.alive]

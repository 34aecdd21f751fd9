"""Root digests for admission, computed off the decision path: ``BackgroundHasher``.

Why: the admission answer must come within a fixed deadline, well under the hook's; hashing
a disk root the store does not know yet takes as long as the file is big (a 40 GiB sparse
root: tens of seconds). When the decision hashed inline, four such VMs starting at once
took every decision thread past the deadline and the gate refused *every* start on the
host, approved VMs included, for minutes. So the decision only ever reads digests already
known (the store's cache, warmed by sweeps and by this hasher); an unknown root is queued
here and the VM is judged at once with that root *unknown* (``DigestPending``), which the
policy's gate holds or denies as it says. Once the hash is done it is in the digest cache
and the next start of that VM is judged on it.

The queue is bounded (a flood of new images cannot grow memory or delay the others forever),
a file is queued once per content identity (device, inode, size, mtime), the workers run at
a lower CPU priority, and ``close()`` stops a hash in progress between two chunks.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
from collections.abc import Callable

from vmwarden.errors import InspectError
from vmwarden.inspect.digest import Remember, cache_key, digest_with_cache

log = logging.getLogger(__name__)

MAX_QUEUED = 64  # distinct roots waiting for a hash; more are refused until some are done
WORKERS = 2
FAILED_KEPT = 1024  # remembered hash failures (a broken file is not re-queued on each start)

Key = tuple[int, int, int, int]


class DigestPending(InspectError):
    """The root's digest is not known yet; it is being computed in the background."""


class BackgroundHasher:
    """Hashes image roots in worker threads; ``request`` never blocks on the hash.

    ``remember``: where a finished digest goes (the store's digest cache, and/or a
    decider's memo), so that the next lookup finds it.

    Example::

        hasher = BackgroundHasher(store.remember_digest)
        digest = store.cached_digest(path, st) or hasher.request(path, st)  # raises pending
    """

    def __init__(
        self,
        remember: Remember,
        *,
        workers: int = WORKERS,
        max_queued: int = MAX_QUEUED,
        on_done: Callable[[str, str | None], None] | None = None,
    ) -> None:
        self.remember = remember
        self.workers = workers
        self.max_queued = max_queued
        self.on_done = on_done  # (path, digest or None) after each job; for tests and logs
        self.done = 0
        self._queue: queue.Queue[tuple[str, Key] | None] = queue.Queue()
        self._pending: set[Key] = set()  # queued or being hashed
        self._failed: dict[Key, str] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._closed = threading.Event()

    # -- the decision side -------------------------------------------------------------------

    def request(self, path: str, st: os.stat_result) -> str:
        """Queue ``path`` (in the state ``st``) for hashing; always raises, never hashes here.

        Raises:
            DigestPending: queued now or earlier, or the queue is full (retry later).
            InspectError: hashing this very file failed before (unreadable, not regular).
        """
        key = cache_key(st)
        with self._lock:
            failed = self._failed.get(key)
            if failed is not None:
                raise InspectError(failed)
            if key in self._pending:
                raise DigestPending(
                    f"digest pending: {path} is being hashed in the background; "
                    "the gate decides from its digest once it is known"
                )
            if self._closed.is_set():
                raise DigestPending(f"digest pending: {path} is not hashed (shutting down)")
            if len(self._pending) >= self.max_queued:
                raise DigestPending(
                    f"digest pending: {self.max_queued} images already wait for a hash; "
                    f"{path} is queued once one is done, try again later"
                )
            self._pending.add(key)
            self._start_workers()
        self._queue.put((path, key))
        raise DigestPending(
            f"digest pending: {path} was queued for hashing in the background; "
            "the gate decides from its digest once it is known"
        )

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def close(self, timeout: float = 5.0) -> None:
        """Stop: queued jobs are dropped, a hash in progress stops at its next chunk."""
        self._closed.set()
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout)

    # -- the workers -------------------------------------------------------------------------

    def _start_workers(self) -> None:
        while len(self._threads) < self.workers:
            thread = threading.Thread(
                target=self._work, name="vmwarden-admission-hash", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def _work(self) -> None:
        with contextlib.suppress(OSError):  # be the one that waits when CPUs are short
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        while True:
            job = self._queue.get()
            if job is None or self._closed.is_set():
                return
            path, key = job
            digest: str | None = None
            try:
                digest = digest_with_cache(
                    path, lambda _p, _s: None, self._remember, self._closed.is_set
                )
                log.info("admission: hashed %s: %s", path, digest)
            except (InspectError, OSError) as exc:
                if not self._closed.is_set():
                    log.warning("admission: cannot hash %s: %s", path, exc)
                    with self._lock:
                        if len(self._failed) >= FAILED_KEPT:
                            self._failed.clear()
                        self._failed[key] = str(exc)  # Lineage says "cannot hash PATH: "
            except Exception:  # a worker must survive anything one file does to it
                log.exception("admission: hashing %s failed unexpectedly", path)
            finally:
                with self._lock:
                    self._pending.discard(key)
                    self.done += 1
            if self.on_done is not None:
                self.on_done(path, digest)

    def _remember(self, path: str, st: os.stat_result, digest: str) -> None:
        try:
            self.remember(path, st, digest)
        except Exception:  # the store may be busy or gone; the next request hashes again
            log.exception("admission: could not remember the digest of %s", path)

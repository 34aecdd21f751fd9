"""Scans requested through the API: one at a time, in a background thread, polled by id.

A sweep takes seconds to minutes, longer than a request should; the request starts it and
returns a job id, ``GET /api/scans/jobs/{id}`` tells how it went. A second request while a
sweep runs is refused (409, naming the running job) rather than queued behind it.
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vmwarden.engine.scan import Sweep, SweepOptions
from vmwarden.errors import VmwardenError
from vmwarden.policy import load_policy

log = logging.getLogger(__name__)
KEEP = 100  # finished jobs remembered


class ScanBusyError(Exception):
    def __init__(self, running: str) -> None:
        super().__init__(f"a scan is already running (job {running})")
        self.running = running


@dataclass
class ScanJob:
    id: str
    requested_by: str
    uris: list[str]
    enforce: bool
    status: str = "queued"  # queued | running | done | failed
    requested_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    started_at: datetime | None = None
    finished_at: datetime | None = None
    summary: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    error: str | None = None


class ScanJobs:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, ScanJob] = {}
        self._running: str | None = None

    def get(self, job_id: str) -> ScanJob | None:
        with self._lock:
            return self._jobs.get(job_id)

    def recent(self) -> list[ScanJob]:
        with self._lock:
            return sorted(self._jobs.values(), key=lambda j: j.requested_at, reverse=True)

    def start(
        self,
        store: Any,
        policy_path: str,
        uris: list[str],
        *,
        actor: str,
        enforce: bool,
        images_dirs: tuple[Path, ...] = (),
    ) -> ScanJob:
        """Start a sweep in a thread; raises :class:`ScanBusyError` while one runs."""
        with self._lock:
            if self._running is not None:
                raise ScanBusyError(self._running)
            job = ScanJob(uuid.uuid4().hex, actor, list(uris), enforce)
            self._jobs[job.id] = job
            self._running = job.id
            self._forget_old()
        thread = threading.Thread(
            target=self._run,
            args=(job, store, policy_path, images_dirs),
            name=f"scan-{job.id[:8]}",
            daemon=True,
        )
        thread.start()
        return job

    def wait(self, job_id: str, timeout: float) -> ScanJob | None:
        """For tests and the CLI: block until the job is finished (or ``timeout``)."""
        deadline = datetime.now(UTC).timestamp() + timeout
        while datetime.now(UTC).timestamp() < deadline:
            job = self.get(job_id)
            if job is None or job.status in ("done", "failed"):
                return job
            threading.Event().wait(0.05)
        return self.get(job_id)

    def _run(
        self, job: ScanJob, store: Any, policy_path: str, images_dirs: tuple[Path, ...] = ()
    ) -> None:
        job.status, job.started_at = "running", datetime.now(UTC)
        try:
            # The boundary of a background job: whatever fails is recorded on the job.
            policy = load_policy(policy_path)
            options = SweepOptions(images_dirs=list(images_dirs))
            sweep = Sweep(store, policy, actor=job.requested_by, options=options)
            result = sweep.run(job.uris, enforce=job.enforce)
            job.summary, job.warnings = result.summary(), list(result.warnings)
            # #10.5/#10.6: a host not reached or an action that failed fails the job (as the
            # CLI exits non-zero), the summary of what was done still there
            problems = result.problems()
            job.status, job.error = ("failed", "; ".join(problems)) if problems else ("done", None)
        except VmwardenError as exc:
            job.status = "failed"
            job.error = f"{exc}" + (f" (hint: {exc.hint})" if exc.hint else "")
        except Exception as exc:
            log.exception("scan job %s failed", job.id)
            job.status, job.error = "failed", f"{type(exc).__name__}: {exc}"
        finally:
            job.finished_at = datetime.now(UTC)
            with self._lock:
                self._running = None

    def _forget_old(self) -> None:
        done = [j for j in self._jobs.values() if j.status in ("done", "failed")]
        for job in sorted(done, key=lambda j: j.requested_at)[: max(0, len(done) - KEEP)]:
            del self._jobs[job.id]

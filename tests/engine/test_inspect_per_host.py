"""#12.3: inspections are bounded per host, so one host's slow storage does not stall others.

``_run_jobs`` is what ``inspect_all`` runs local misses and remote disks through; its jobs
here are real waits standing for a host whose storage answers slowly.
"""

from __future__ import annotations

import threading
import time

from vmwarden.engine.inspection import _run_jobs, per_host
from vmwarden.errors import InspectError
from vmwarden.model import GuestFacts


def test_per_host_bound() -> None:
    assert per_host(4, 1) == 4  # one host: every worker
    assert per_host(4, 2) == 2 and per_host(2, 3) == 1 and per_host(1, 2) == 1


def test_a_slow_host_does_not_stall_a_fast_one() -> None:
    finished: list[tuple[str, float]] = []
    lock = threading.Lock()
    t0 = time.monotonic()

    def job(host: str, seconds: float):
        def run() -> GuestFacts:
            time.sleep(seconds)
            with lock:
                finished.append((host, time.monotonic() - t0))
            if host == "slow" and seconds > 0.5:
                raise InspectError("cannot read: timed out")
            return GuestFacts(image=host)

        return run

    jobs = [("slow", f"slow{i}", job("slow", 0.6)) for i in range(4)]
    jobs += [("fast", f"fast{i}", job("fast", 0.01)) for i in range(4)]
    results = _run_jobs(jobs, 2, lambda: None)
    assert len(results) == 8
    assert isinstance(results["slow0"], InspectError) and isinstance(results["fast3"], GuestFacts)
    fast_done = max(t for h, t in finished if h == "fast")
    assert fast_done < 0.5  # never queued behind the slow host's 2.4 s

"""Shared bench plumbing: child-process measurement (wall time + peak RSS), repeats, caching.

Each measurement runs in a fresh Python process so that peak RSS is the measured job's own,
and so that runs do not warm each other's caches unless the benchmark says so.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CACHE = Path(os.environ.get("VMWARDEN_BENCH_CACHE", "/var/cache/vmwarden-bench"))
RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parent.parent

# A child prints one JSON line: {"seconds": float, ...extra}; we add peak RSS from rusage.
_RUNNER = """
import json, resource, sys, time
ns = {}
exec(compile(sys.argv[1], "<setup>", "exec"), ns)
t0 = time.perf_counter()
extra = ns["run"]()
seconds = time.perf_counter() - t0
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"seconds": seconds, "rss": rss, **(extra or {})}))
"""


@dataclass
class Sample:
    name: str
    values: list[float] = field(default_factory=list)
    rss: list[int] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def stats(self) -> dict[str, float]:
        v = sorted(self.values)
        return {"min": v[0], "median": statistics.median(v), "max": v[-1], "n": len(v)}

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            **self.stats(),
            "peak_rss": max(self.rss, default=0),
            **self.extra,
        }


def in_child(code: str, *, timeout: float = 1800) -> dict[str, Any]:
    """Run ``code`` (which defines ``run()``) in a new interpreter; time only ``run()``."""
    proc = subprocess.run(
        [sys.executable, "-c", _RUNNER, code],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=REPO,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"bench child failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def repeat(name: str, code: str, times: int) -> Sample:
    s = Sample(name)
    for _ in range(times):
        r = in_child(code)
        s.values.append(r.pop("seconds"))
        s.rss.append(r.pop("rss"))
        s.extra.update(r)
    return s


def machine_facts() -> dict[str, Any]:
    import libvirt
    import sqlalchemy

    mem = 0
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(mem / 2**30, 1),
        "kvm": os.path.exists("/dev/kvm"),
        "python": platform.python_version(),
        "libvirt": ".".join(str(libvirt.getVersion() // 10**i % 1000) for i in (6, 3, 0)),
        "sqlalchemy": sqlalchemy.__version__,
        "kernel": platform.release(),
    }


def stop_processes(procs: list[subprocess.Popen[bytes]], timeout: float = 30) -> None:
    """Terminate every process, then reap each (killed when it does not exit in time)."""
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

"""The streaming sweep's master memory grows far slower than the estate.

The same generated estate shape at 10,000 and 50,000 VMs (100 and 500 test-driver hosts of
100 VMs, ``duplicate-mac`` and the other rules of ``test_stream_sweep``), each swept by
``StreamingSweep`` into SQLite in a fresh process that reports its peak RSS. Between the two
the peak may grow only by the estate-wide duplicate index (a keyed hash and a label per MAC,
~260 bytes per VM measured here), far below what the sweep would hold per VM if it kept the
estate: the stored record alone is ~1.4 KB of JSON per VM (this sweep grew by ~1.8 KB per
VM while the cyclic collector was paused for the whole stream; the whole-estate ``Sweep``
peaks near 13 KB per VM, bench/estate_scale.py). Sizes, not times, are asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.engine.test_stream_sweep import POLICY

REPO = Path(__file__).resolve().parents[2]

CHILD = """
import json, resource, sys
from pathlib import Path
from vmwarden.engine.estate_files import write_estate
from vmwarden.engine.stream import StreamingSweep
from vmwarden.policy import parse_policy
from vmwarden.store import Store
hosts, d, policy = int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
uris = write_estate(d / f"estate-{hosts}", hosts, 100)
store = Store.open(f"sqlite:///{d}/s{hosts}.db")
result = StreamingSweep(store, parse_policy(policy)).run(uris)
with store._engine.connect() as c:
    record = c.exec_driver_sql("SELECT avg(length(record)) FROM vms").scalar()
    dups = c.exec_driver_sql("SELECT count(*) FROM findings WHERE rule = 'dupmac'").scalar()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"vms": result.vms, "peak": peak, "record": record, "dups": dups}))
"""


def _sweep(hosts: int, tmp: Path) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(hosts), str(tmp), POLICY],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_the_streaming_masters_memory_grows_far_less_than_the_estate(tmp_path: Path) -> None:
    small, big = _sweep(100, tmp_path), _sweep(500, tmp_path)
    assert (small["vms"], big["vms"]) == (10_000, 50_000)
    assert big["dups"] > small["dups"] > 0  # the estate-wide index had work at both sizes
    per_vm = (big["peak"] - small["peak"]) / (big["vms"] - small["vms"])
    record = big["record"]
    print(
        f"\npeak RSS {small['peak'] / 2**20:.0f} MiB at 10k, {big['peak'] / 2**20:.0f} MiB at "
        f"50k: {per_vm:.0f} B per VM; stored record {record:.0f} B per VM"
    )
    assert per_vm < record / 3

"""Content lineage (#12.4): signing the Debian image and comparing disks with it.

Rows: signing the template (seconds, host bytes read as a share of the image file), then
one comparison per case of ``tests/inspect/lineage_cases.py`` (a linked clone, a used full
copy qcow2 → raw → qcow2, a growpart-resized raw copy, a copy whose guest deleted docs,
locales and time zones and ran fstrim, the used copy as a streamOptimized vmdk; another debootstrap of the release,
the agent image's debootstrap, an unrelated ext4) with its similarity and the verdict at
the default threshold, and the false-positive / false-negative counts over those cases.
``read_pct`` is against the compared disk's files (every layer of its chain, a sparse raw
file by what it allocates; < 2% is the target). ``reads`` is the number of ranged reads a
remote reader would make, and ``remote_ms`` what they cost at 1 ms round trip, 1 Gbit/s; the
comparison of a real remote volume (bytes over a libvirt connection) is measured in
``bench/remote_disks.py`` (``--only remote``: "lineage: compare remote volume").
Times are medians of in-process runs, each with the disk's files dropped from the page cache
(``POSIX_FADV_DONTNEED``): read from storage.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.inspect.lineage_cases import AGENT_BUILD, OTHER_BUILD, TEMPLATE, cases

from bench.common import REPO
from vmwarden.inspect.chain import resolve_chain
from vmwarden.inspect.lineage_sig import Signature, compare, sign
from vmwarden.inspect.virtual import open_virtual
from vmwarden.policy.filters.template import DEFAULT_THRESHOLD

DERIVED = ("linked", "full_used", "grown", "trimmed", "stream_vmdk")
COMPRESSED = ("stream_vmdk",)  # a 4 KiB sample costs its whole compressed grain


def _cold(path: Path) -> None:
    """Drop the page cache of every file of the disk: each run reads from storage."""
    for layer in resolve_chain(path):
        fd = os.open(layer.path or "", os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _timed(fn: Any, times: int, path: Path) -> tuple[list[float], Any]:
    walls, out = [], None
    for _ in range(times):
        _cold(path)
        t0 = time.perf_counter()
        out = fn()
        walls.append(time.perf_counter() - t0)
    return walls, out


def _row(name: str, walls: list[float], read: int, size: int, reads: int) -> dict[str, Any]:
    med = statistics.median(walls)
    return {
        "name": name,
        "min": min(walls),
        "median": med,
        "max": max(walls),
        "n": len(walls),
        "read_pct": f"{100 * read / size:.2f}% ({read / 2**20:.2f} of {size / 2**20:.0f} MiB)",
        "read_frac": read / size,
        "reads": reads,
        "remote_ms": reads * 1.0 + read * 8 / 1e6,
    }


def _sign(path: Path) -> tuple[Signature, int]:
    with open_virtual(path, allowed_dirs=None) as disk:
        return sign(disk), disk.reads


def _compare(sig: Signature, path: Path, allowed: list[Path]) -> tuple[float, int, int, int]:
    """(similarity, bytes read, reads, bytes of every layer of the disk). A sparse raw file's
    bytes are what it allocates, not its apparent size (a grown 2 GiB raw holds 178 MiB)."""
    with open_virtual(path, allowed_dirs=[str(d) for d in allowed]) as disk:
        size = sum(_allocated(layer.path) for layer in resolve_chain(path))
        return compare(sig, disk).score, disk.bytes_read, disk.reads, size


def _allocated(path: str | None) -> int:
    st = os.stat(path or "")
    return min(st.st_size, st.st_blocks * 512)


def run(repeats: int = 3) -> list[dict[str, Any]]:
    if not TEMPLATE.exists():
        subprocess.run(["bash", str(REPO / "scripts" / "build-debian-image.sh")], check=True)
    if not OTHER_BUILD.exists():
        subprocess.run(["bash", str(REPO / "scripts" / "build-lineage-other.sh")], check=True)
    built = cases(TEMPLATE)
    walls, (sig, reads) = _timed(lambda: _sign(TEMPLATE), repeats, TEMPLATE)
    size = TEMPLATE.stat().st_size
    rows = [_row("lineage: sign template", walls, sig.bytes_read, size, reads)]
    rows[0]["note"] = f"{len(sig.offsets)} blocks of 4 KiB sampled"
    verdicts: dict[str, bool] = {}
    with tempfile.TemporaryDirectory(prefix="vmwarden-bench-lineage-") as tmp:
        linked = Path(tmp) / "linked.qcow2"
        subprocess.run(
            ["qemu-img", "create", "-q", "-f", "qcow2", "-b", TEMPLATE, "-F", "qcow2", linked],
            check=True,
        )
        subprocess.run(
            ["qemu-io", "-f", "qcow2", "-c", "write -P 0x33 1M 4M", str(linked)],
            check=True,
            capture_output=True,
        )
        disks = {"linked": linked, **built, "other_build": OTHER_BUILD}
        if AGENT_BUILD.exists():
            disks["agent_build"] = AGENT_BUILD
        allowed = [TEMPLATE.parent, Path(tmp), *{p.parent for p in disks.values()}]
        for name, path in disks.items():
            walls, (score, read, n, size) = _timed(
                lambda p=path: _compare(sig, p, allowed), repeats, path
            )
            row = _row(f"lineage: compare {name}", walls, read, size, n)
            row["compressed"] = name in COMPRESSED
            derived = score >= DEFAULT_THRESHOLD
            verdicts[name] = derived
            row["note"] = f"similarity {score:.3f}: {'derived' if derived else 'not derived'}"
            rows.append(row)
    fn = [n for n in DERIVED if n in verdicts and not verdicts[n]]
    fp = [n for n in verdicts if n not in DERIVED and verdicts[n]]
    others = len(verdicts) - len(DERIVED)
    rows.append(
        {
            "name": f"lineage: error rates at threshold {DEFAULT_THRESHOLD}",
            "note": f"false negatives {len(fn)}/{len(DERIVED)} {fn or ''}; "
            f"false positives {len(fp)}/{others} {fp or ''}",
        }
    )
    return rows

"""CLI start-up: wall time of ``vmwarden --help`` and ``vmwarden report`` beside a floor.

The floor is the same interpreter running ``import typer`` (what any Typer CLI pays before
its first line); the target (issue 10) is well under 0.5 s for both commands. Each figure is
the median of fresh processes, so imports are paid every time as a user pays them.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PY = sys.executable


def _wall(argv: list[str], times: int) -> list[float]:
    out = []
    for _ in range(times):
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        out.append(time.perf_counter() - t0)
    return out


def _row(name: str, walls: list[float], floor: float | None) -> dict[str, Any]:
    med = statistics.median(walls)
    row: dict[str, Any] = {
        "name": name,
        "min": min(walls),
        "median": med,
        "max": max(walls),
        "n": len(walls),
        "p50_ms": med * 1000,
    }
    if floor:
        row["ratio_to_floor"] = med / floor
    return row


def run(times: int = 7) -> list[dict[str, Any]]:
    floor = _wall([PY, "-c", "import typer"], times)
    rows = [_row("floor: python -c 'import typer'", floor, None)]
    base = statistics.median(floor)
    cli = [PY, "-m", "vmwarden.cli.main"]
    rows.append(_row("vmwarden --help", _wall([*cli, "--help"], times), base))
    with tempfile.TemporaryDirectory(prefix="vmwarden-bench-startup-") as tmp:
        db = f"sqlite:///{Path(tmp) / 'v.db'}"
        subprocess.run([*cli, "report", "findings", "--db", db], check=True, capture_output=True)
        walls = _wall([*cli, "report", "findings", "--db", db], times)
        rows.append(_row("vmwarden report findings (empty store)", walls, base))
    return rows

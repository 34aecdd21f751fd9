"""Run every benchmark; write bench/results/latest.json and latest.md.

``python -m bench`` is the quick mode (< 5 minutes); ``python -m bench --full`` the full size.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import policy_eval, sweep
from bench.common import RESULTS, machine_facts


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def markdown(results: dict[str, Any]) -> str:
    lines = [f"# vmwarden benchmarks ({results['mode']}, {results['at']})", ""]
    lines.append("Machine: " + ", ".join(f"{k} {v}" for k, v in results["machine"].items()))
    for section, rows in results["sections"].items():
        lines += ["", f"## {section}", ""]
        cols = [
            c
            for c in (
                "name",
                "min",
                "median",
                "max",
                "n",
                "us_per_vm",
                "ratio_to_floor",
                "excl_connect",
                "peak_rss",
                "evals_per_second",
                "findings",
            )
            if any(c in r for r in rows)
        ]
        lines.append("| " + " | ".join(cols) + " |")
        lines.append("|" + "---|" * len(cols))
        for r in rows:
            cells = []
            for c in cols:
                v = r.get(c, "")
                if c == "peak_rss":
                    v = f"{v / 2**20:.0f} MiB" if v else ""
                cells.append(_fmt(v))
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--full", action="store_true", help="full sizes (slow)")
    args = ap.parse_args()
    mode = "full" if args.full else "quick"
    sizes = [1000, 10_000, 50_000] if args.full else [1000, 10_000]
    repeats = 5 if args.full else 3
    with tempfile.TemporaryDirectory(prefix="vmwarden-bench-") as tmp:
        sections = {
            "Sweep (seconds; floor = listAllDomains + XMLDesc + lxml parse)": sweep.run(
                sizes, repeats, Path(tmp)
            ),
            "Policy evaluation (one core)": policy_eval.run(
                100_000 if args.full else 20_000, repeats
            ),
        }
    results = {
        "mode": mode,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_facts(),
        "sections": sections,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2))
    md = markdown(results)
    (RESULTS / "latest.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()

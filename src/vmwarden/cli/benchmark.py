"""``vmwarden benchmark IMAGE --datastream DS.xml``: an SCAP hardening baseline, offline."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from vmwarden.scap.xccdf import BenchmarkResult


class Format(StrEnum):
    json = "json"
    table = "table"
    arf = "arf"


def register(app: typer.Typer) -> None:
    """Add the ``benchmark`` command."""

    @app.command("benchmark")
    def benchmark(
        image: Annotated[
            Path, typer.Argument(help="Disk image file.", exists=True, dir_okay=False)
        ],
        datastream: Annotated[
            Path,
            typer.Option(
                "--datastream",
                help="SCAP 1.2/1.3 source datastream, e.g. "
                "/usr/share/xml/scap/ssg/content/ssg-debian11-ds.xml (package ssg-debian).",
                exists=True,
                dir_okay=False,
            ),
        ],
        profile: Annotated[
            str | None,
            typer.Option(
                "--profile",
                help="XCCDF profile id (full or the part after '_profile_'); without it, "
                "the benchmark's own default selection.",
            ),
        ] = None,
        ignore_platform: Annotated[
            bool,
            typer.Option(
                "--ignore-platform",
                help="Judge the disk even when it is not the OS release the content is for "
                "(e.g. Debian 11 content on Debian 12); rule-level conditions still apply.",
            ),
        ] = False,
        fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
        allow_dir: Annotated[
            list[Path] | None,
            typer.Option(
                "--allow-dir",
                help="Directory backing files may be read from (repeatable); the image's own "
                "directory always is.",
                show_default=False,
            ),
        ] = None,
        timeout: Annotated[
            float, typer.Option("--timeout", help="Seconds per worker request.")
        ] = 120.0,
    ) -> None:
        """Evaluate an SCAP benchmark (XCCDF + OVAL) on a disk image, offline: per-rule
        results and the score, as OpenSCAP computes them.

        The image is read in a sandboxed worker (nothing mounted, nothing run). Checks that
        need a running system (running kernel parameters, process environment) are
        "notchecked" or "unknown", never a pass. JSON lists every selected rule with its OVAL
        definitions' results; ARF is the SCAP result datastream other SCAP tools import."""
        from vmwarden.scap.xccdf import resolve_profile
        from vmwarden.scap.xccdf_content import load
        from vmwarden.scap.xccdf_image import benchmark_image

        bench = load(datastream)
        profile_id = resolve_profile(bench.profiles, profile)
        allowed = [image.resolve().parent, *(allow_dir or [])]
        started = datetime.now(UTC)
        result, extra = benchmark_image(
            image,
            bench,
            profile_id=profile_id,
            ignore_platform=ignore_platform,
            allowed_dirs=allowed,
            timeout=timeout,
        )
        if fmt is Format.arf:
            from vmwarden.scap.xccdf_arf import to_arf

            arf = to_arf(result, bench, datastream=datastream, image=image, started=started)
            sys.stdout.buffer.write(arf)
            return
        doc = to_json(result, extra, image=image, datastream=datastream)
        if fmt is Format.json:
            print(json.dumps(doc, indent=2))
        else:
            _table(result, doc)


def to_json(
    result: BenchmarkResult, extra: dict[str, Any], *, image: Path, datastream: Path
) -> dict[str, Any]:
    """The JSON document: rules (selected ones) with their definitions, and the summary."""
    reasons = extra.get("reasons", {})
    return {
        "image": str(image),
        "datastream": str(datastream),
        "benchmark": result.benchmark_id,
        "profile": result.profile_id or None,
        "platform_applicable": result.platform_applicable,
        "ignored_platforms": list(result.ignored_platforms),
        "score": result.score,
        "scoring": "urn:xccdf:scoring:default",
        "counts": {k: v for k, v in result.counts().items() if k != "notselected"},
        "rules": [
            {
                "id": r.rule_id,
                "title": r.title,
                "severity": r.severity,
                "result": r.result,
                "definitions": r.definitions,
                **({"message": r.message} if r.message else {}),
            }
            for r in result.rules
            if r.result != "notselected"
        ],
        "definitions": {
            d: {"result": res, **({"reason": reasons[d]} if d in reasons else {})}
            for d, res in result.definitions.items()
        },
        "stats": extra.get("stats", {}),
    }


def _table(result: BenchmarkResult, doc: dict[str, Any]) -> None:
    from rich.table import Table
    from rich.text import Text

    from vmwarden.cli.common import out
    from vmwarden.model.escape import visible

    table = Table("result", "severity", "rule", "title", box=None, pad_edge=False)
    for rule in doc["rules"]:
        short = rule["id"].rsplit("_rule_", 1)[-1]
        table.add_row(
            rule["result"], rule["severity"], Text(visible(short)), Text(visible(rule["title"]))
        )
    out.print(table)
    counts = ", ".join(f"{n} {k}" for k, n in doc["counts"].items() if n)
    platform = "" if result.platform_applicable else " (content's platform does not apply)"
    out.print(
        Text(
            f"{visible(result.profile_id or result.benchmark_id)}: score {result.score:.2f} "
            f"of 100; {counts or 'no rules selected'}{platform}"
        ),
        soft_wrap=True,  # one line whatever the terminal's width: scripts read it
    )

"""Turn a scan result into what a person (table) or a program (json, ocsf) reads."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.table import Table

from vmwarden.engine.scan import ScanResult
from vmwarden.notify.base import Alert
from vmwarden.notify.formats import ocsf

_SEV_STYLE = {
    "critical": "bold red",
    "high": "red",
    "medium": "yellow",
    "low": "cyan",
    "info": "dim",
}


def _evidence(ev: dict[str, Any], limit: int = 70) -> str:
    text = ", ".join(f"{k}={v}" for k, v in ev.items())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render_table(result: ScanResult, console: Console, *, max_rows: int = 60) -> None:
    s = result.summary()
    states = ", ".join(f"{n} {k}" for k, n in sorted(s["vms_by_state"].items()))
    console.print(
        f"[bold]{s['vms']} VMs[/] on {s['hosts']} host(s) ({states}); {s['images']} images; "
        f"[bold]{s['findings']} findings[/] on {s['vms_with_findings']} VMs"
        + (f"; {s['seconds']:.2f} s" if s["seconds"] is not None else "")
    )
    if result.findings:
        by_rule: dict[str, int] = {}
        for f in result.findings:
            by_rule[f.rule] = by_rule.get(f.rule, 0) + 1
        t = Table(title="Findings by rule", show_edge=False)
        t.add_column("rule")
        t.add_column("count", justify="right")
        for rule, n in sorted(by_rule.items(), key=lambda x: -x[1]):
            t.add_row(rule, str(n))
        console.print(t)
        t = Table(title="Findings", show_edge=False)
        for col in ("severity", "rule", "resource", "name", "host", "evidence"):
            t.add_column(col)
        ordered = sorted(result.findings, key=lambda f: (-int(f.severity), f.rule, f.host, f.name))
        for f in ordered[:max_rows]:
            sev = str(f.severity)
            t.add_row(
                f"[{_SEV_STYLE[sev]}]{sev}[/]",
                f.rule,
                f.resource,
                f.name,
                f.host,
                _evidence(f.evidence),
            )
        console.print(t)
        if len(ordered) > max_rows:
            console.print(f"… and {len(ordered) - max_rows} more (use --format json for all)")
    if result.actions:
        t = Table(title="Actions", show_edge=False)
        for col in ("action", "name", "host", "status", "rule"):
            t.add_column(col)
        for a in result.actions[:max_rows]:
            t.add_row(a.action, a.name, a.host, a.status, a.rule or "")
        console.print(t)
        if any(a.status == "dry-run" for a in result.actions):
            console.print("[dim]Report only: pass --enforce to carry out the actions above.[/]")
    for w in result.warnings[:20]:
        console.print(f"[yellow]warning:[/] {w}")


def render_json(result: ScanResult) -> str:
    return json.dumps(result.to_dict(), indent=2, default=str)


def render_ocsf(result: ScanResult) -> str:
    lines = []
    for f in result.findings:
        alert = Alert(
            event="finding.opened",
            rule=f.rule,
            severity=str(f.severity),
            resource=f.resource,
            id=f.id,
            name=f.name,
            host=f.host,
            evidence=f.evidence,
        )
        lines.append(json.dumps(ocsf(alert), default=str))
    return "\n".join(lines)

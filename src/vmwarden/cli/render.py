"""Turn a scan result into what a person (table) or a program (json, ocsf) reads.

Every name, evidence value, warning and error in the table comes from guests, domain
definitions or file names: each reaches the console as a ``Text`` of :func:`visible` text,
never as a markup string, so Rich markup (``[link=…]``, ``x[/]``), emoji codes and terminal
escape sequences in them are shown as written and never interpreted.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from vmwarden.engine.scan import ScanResult
from vmwarden.model.escape import visible
from vmwarden.notify.base import Alert
from vmwarden.notify.formats import ocsf

_SEV_STYLE = {
    "critical": "bold red",
    "high": "red",
    "medium": "yellow",
    "low": "cyan",
    "info": "dim",
}


def _short(v: Any) -> str:
    if isinstance(v, list):
        return ",".join(_short(x) for x in v)
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}={_short(x)}" for k, x in v.items()) + "}"
    text = str(v)
    if text.startswith("/") and "/" in text[1:]:
        return "…/" + text.rsplit("/", 1)[1]  # paths: the file name says enough in a table
    if len(text) > 19 and text[4] == "-" and text[10] == "T":
        return text[:10]  # ISO timestamps: the date
    if text.startswith("sha256:"):
        return text[:19] + "…"
    return text


def _evidence(ev: dict[str, Any]) -> str:
    return "; ".join(f"{k}={_short(v)}" for k, v in ev.items())


def _vm_counts(names: list[str]) -> str:
    """``5 on 3 VMs: a (2), b (2), c``: one action per rule would otherwise list a VM per rule."""
    counts = Counter(names)
    listed = ", ".join(f"{n} ({c})" if c > 1 else n for n, c in sorted(counts.items()))
    if len(counts) == len(names):
        return f"{len(names)}: {listed}"
    return f"{len(names)} on {len(counts)} VMs: {listed}"


def _text(value: str, style: str = "") -> Text:
    """Untrusted text as a renderable: controls shown, no markup or emoji parsed."""
    return Text(visible(value), style=style)


def _line(label: str, style: str, message: str) -> Text:
    """``label: message`` with only the label styled."""
    return Text.assemble((label, style), " ", _text(message))


def render_table(result: ScanResult, console: Console, *, max_rows: int = 60) -> None:
    s = result.summary()
    states = ", ".join(f"{n} {k}" for k, n in sorted(s["vms_by_state"].items()))
    took = f" in {s['seconds']:.2f} s" if s["seconds"] is not None else ""
    if (c := result.streamed) is not None:  # engine/stream.py: counts only, rows in the store
        console.print(
            f"Scanned [bold]{c['vms']} VMs[/] on {c['hosts']} host(s) host by host{took}: "
            f"[bold]{c['findings']} findings[/] ({c['opened']} opened, {c['resolved']} "
            "resolved); list them with vmwarden report findings or the API",
            highlight=False,
        )
        if c.get("on_workers"):  # --scheduler: the rest were read by this process
            console.print(f"Hosts read on Dask workers: {c['on_workers']} of {c['hosts']}")
    else:
        console.print(
            f"Scanned [bold]{s['vms']} VMs[/] on {s['hosts']} host(s) ({states}) and "
            f"{s['images']} images{took}: [bold]{s['findings']} findings[/] on "
            f"{s['vms_with_findings']} VMs",
            highlight=False,
        )
    if "worker" in result.disk_reads.values():  # --scheduler: say where each host was read
        reads = ", ".join(f"{h} {how}" for h, how in sorted(result.disk_reads.items()))
        console.print(Text(f"Disk reads: {reads}"), highlight=False)
    if result.findings:
        t = Table(title="Findings", show_edge=False, title_justify="left")
        t.add_column("severity", no_wrap=True, min_width=8)
        t.add_column("rule", no_wrap=True, min_width=16)
        t.add_column("VM / image", no_wrap=True, min_width=20)
        t.add_column("evidence", overflow="fold")
        ordered = sorted(result.findings, key=lambda f: (-int(f.severity), f.rule, f.host, f.name))
        for f in ordered[:max_rows]:
            sev = str(f.severity)
            t.add_row(
                Text(sev, style=_SEV_STYLE[sev]),
                _text(f.rule),
                _text(f"{f.host}/{f.name}" if f.host else f.name),  # cloud VMs: no host
                _text(_evidence(f.evidence)),
            )
        console.print(t)
        if len(ordered) > max_rows:
            console.print(f"… and {len(ordered) - max_rows} more (use --format json for all)")
    if result.actions:
        groups: dict[tuple[str, str], list[str]] = {}
        for a in result.actions:
            groups.setdefault((a.action, a.status), []).append(a.name)
        t = Table(title="Actions", show_edge=False, title_justify="left")
        t.add_column("action", no_wrap=True)
        t.add_column("status", no_wrap=True)
        t.add_column("VMs", overflow="fold")
        for (action, status), names in sorted(groups.items()):
            t.add_row(_text(action), _text(status), _text(_vm_counts(names)))
        console.print(t)
        if any(a.status == "dry-run" for a in result.actions):
            console.print("[dim]Report only: pass --enforce to carry out the actions above.[/]")
        for a in result.actions:
            if a.error:
                console.print(_line(visible(f"{a.action} {a.name}:"), "yellow", a.error))
    for w in result.warnings[:20]:
        console.print(_line("warning:", "yellow", w))
    if len(result.warnings) > 20:
        console.print(f"… and {len(result.warnings) - 20} more warnings (see --format json)")


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

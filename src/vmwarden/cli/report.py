"""``vmwarden report``: findings, VMs, history and the audit log from the store.

Names, paths, evidence and reasons come from guests, domain definitions, file names and
operators: every cell is escaped for its sink (``vmwarden.model.escape``) — a table cell is
a ``Text`` (no Rich markup, controls shown), a CSV cell never starts a formula, an HTML cell
is HTML-escaped. JSON keeps exact values (``json.dumps`` escapes controls itself).
"""

from __future__ import annotations

import csv
import html
import io
import json
import re
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.text import Text

from vmwarden.cli.common import DbOpt, complain, open_store, out
from vmwarden.model.escape import for_csv, visible, visible_keep_lines

if TYPE_CHECKING:
    from vmwarden.compliance import ComplianceReport, HookFacts


class What(StrEnum):
    findings = "findings"
    vms = "vms"
    images = "images"
    history = "history"
    audit = "audit"
    compliance = "compliance"


class Fmt(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"
    html = "html"


_TABLE_COLUMNS: dict[What, tuple[str, ...]] = {
    What.findings: ("severity", "rule", "host", "name", "evidence"),
    What.vms: ("host", "name", "state", "last_seen"),
    What.images: ("host", "path", "format", "template", "digest"),
    What.history: ("at", "field", "old", "new"),
    What.audit: ("created_at", "action", "name", "status", "actor", "reason"),
}


def _rows(store: Any, what: What, vm: str | None) -> list[dict[str, Any]]:
    if what is What.findings:
        return store.open_findings()
    if what is What.vms:
        from vmwarden.store.guest import guest_of

        # a swept VM's record has no guest: its facts are the cached ones of its disks
        return [
            {k: v for k, v in r.items() if k != "record"} | {"guest": guest_of(store, r)}
            for r in store.list_vms()
        ]
    if what is What.images:
        return store.list_images()
    if what is What.history:
        if not vm:
            raise typer.BadParameter(
                "report history needs a VM name or UUID (e.g. vmwarden report history web01)",
                param_hint="VM",
            )
        return [_plain(h) for h in store.vm_history(vm)]
    return [a.to_dict() for a in store.journal_entries()]


def _plain(obj: Any) -> dict[str, Any]:
    """A row as JSON-ready data: records' own ``to_dict`` (severity as a word, ISO times)."""
    if isinstance(obj, dict):
        return obj
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if hasattr(obj, "_asdict"):
        return obj._asdict()
    if hasattr(obj, "__dataclass_fields__"):
        return {k: getattr(obj, k) for k in obj.__dataclass_fields__}
    return dict(obj)


def _default(v: Any) -> Any:
    """JSON for what the store returns beyond plain data: ISO 8601 times, enum words."""
    if isinstance(v, datetime):
        return v.isoformat()
    return str(v)


def _flat(v: Any) -> str:
    if isinstance(v, dict | list):
        return json.dumps(v, default=_default)
    if isinstance(v, datetime):
        return v.isoformat()
    return "" if v is None else str(v)


_ISO = re.compile(r"^(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d:\d\d)[.\d]*(\+00:00|Z)?$")


def _cell(v: Any) -> str:
    """A table cell: times to the second (UTC), long values cut."""
    text = _flat(v)
    m = _ISO.match(text)
    if m:
        return f"{m[1]} {m[2]}"
    return text if len(text) <= 60 else text[:59] + "…"


def _html(text: str) -> str:
    """An HTML cell: markup escaped, and controls shown (the page may be read in a terminal)."""
    return html.escape(visible_keep_lines(text))


def register_report(app: typer.Typer) -> None:
    @app.command(
        epilog="Examples: vmwarden report findings --format csv; vmwarden report history web01"
    )
    def report(
        what: Annotated[What, typer.Argument(help="What to report.")] = What.findings,
        vm: Annotated[str | None, typer.Argument(help="VM name or UUID (for history).")] = None,
        fmt: Annotated[Fmt, typer.Option("--format", help="Output format.")] = Fmt.table,
        framework: Annotated[
            str | None,
            typer.Option(
                "--framework",
                help="For compliance: cis-controls-v8, pci-dss-4.0, nist-800-53, disa-vmm-srg "
                "or a mapping file's path.",
                show_default=False,
            ),
        ] = None,
        policy: Annotated[
            Path | None,
            typer.Option(
                "-p",
                "--policy",
                help="For compliance: the policy whose rules map to controls (without it, "
                "rule-mapped controls are not assessed).",
                show_default=False,
            ),
        ] = None,
        db: DbOpt = None,
    ) -> None:
        """Findings, VMs, images, a VM's history or the audit log, from the store.

        `report compliance --framework NAME -p POLICY`: pass/fail per framework control.
        """
        if what is What.compliance:
            if vm is not None:
                raise typer.BadParameter("report compliance takes no VM", param_hint="VM")
            _compliance(framework, policy, fmt, db)
            return
        if framework is not None or policy is not None:
            raise typer.BadParameter(
                "--framework and -p/--policy apply to `report compliance` only",
                param_hint="--framework",
            )
        from vmwarden.store.reads import open_findings

        fast = open_findings(db) if what is What.findings else None
        if fast is not None:  # an up-to-date SQLite store, read without SQLAlchemy
            rows = [_plain(r) for r in fast]
        else:
            with open_store(db) as store:
                rows = [_plain(r) for r in _rows(store, what, vm)]
        cols = list(rows[0].keys()) if rows else []
        if fmt is Fmt.json:
            print(json.dumps(rows, indent=2, default=_default))
        elif fmt is Fmt.csv:
            buf = io.StringIO()
            w = csv.writer(buf)
            w.writerow([for_csv(c) for c in cols])
            w.writerows([[for_csv(_flat(r.get(c))) for c in cols] for r in rows])
            print(buf.getvalue(), end="")
        elif fmt is Fmt.html:
            head = "".join(f"<th>{_html(c)}</th>" for c in cols)
            body = "".join(
                "<tr>" + "".join(f"<td>{_html(_flat(r.get(c)))}</td>" for c in cols) + "</tr>"
                for r in rows
            )
            print(
                f"<!doctype html><meta charset=utf-8><title>vmwarden {what}</title>"
                f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
            )
        elif not rows:
            out.print(f"{what} (0): nothing recorded", highlight=False)
        else:
            # a terminal holds a handful of columns; json/csv/html carry all of them
            from rich.table import Table

            shown = [c for c in _TABLE_COLUMNS[what] if c in cols] or cols
            t = Table(title=f"{what} ({len(rows)})", show_edge=False)
            for c in shown:
                t.add_column(Text(visible(c)), overflow="fold")
            for r in rows:
                t.add_row(*[Text(visible(_cell(r.get(c)))) for c in shown])
            out.print(t)


# --- report compliance ------------------------------------------------------------------------


def _hook_facts(uris: list[str]) -> HookFacts:
    """The power-on hook, as far as this host can tell: only a local libvirtd's hook is
    readable here; the hook of a host reached over ssh/tcp (or a test driver's) is not."""
    from vmwarden.compliance import HookFacts
    from vmwarden.connectors.capabilities import start_hook

    hook = start_hook()
    remote = sorted({u for u in uris if not hook.serves(u)})
    elsewhere = f"`vmwarden hook status` must be checked on {', '.join(remote)}"
    if remote and not any(hook.serves(u) for u in uris):
        return HookFacts(None, f"the scanned hosts are not this one: {elsewhere}")
    try:
        st = hook.status()
    except OSError as exc:
        return HookFacts(None, f"cannot read the hook: {exc.strerror}")
    if not (st.exists and st.ours):
        return HookFacts(False, f"no vmwarden hook at {st.path} on this host")
    if st.unsafe:
        return HookFacts(False, f"the hook at {st.path} is unsafe: {st.unsafe}")
    if not st.libvirtd_sees_it:
        return HookFacts(None, f"{st.path} is installed; whether libvirtd runs it is unknown")
    if remote:
        return HookFacts(None, f"installed here ({st.why}); {elsewhere}")
    return HookFacts(True, st.why)


def _compliance(framework: str | None, policy: Path | None, fmt: Fmt, db: str | None) -> None:
    from vmwarden.compliance import available_frameworks, evaluate, gather, load_framework
    from vmwarden.policy.loader import load_policy

    if not framework:
        raise typer.BadParameter(
            f"report compliance needs --framework ({', '.join(available_frameworks())})",
            param_hint="--framework",
        )
    mapping = load_framework(framework)
    rules = load_policy(policy) if policy is not None else None
    with open_store(db) as store:
        evidence = gather(store)
    evidence.hook = _hook_facts(evidence.last_scan["uris"] if evidence.last_scan else [])
    report = evaluate(mapping, rules, evidence, policy_source=str(policy) if policy else None)
    if policy is not None and evidence.last_scan is not None:
        changed = datetime.fromtimestamp(policy.stat().st_mtime, UTC)
        if changed > evidence.last_scan["started_at"]:
            report.warnings.append(
                f"{policy} changed after the last scan started ({_cell(changed.isoformat())} "
                "UTC): rules added since have not been evaluated; scan again for their evidence"
            )
    for warning in report.warnings:
        complain("warning", warning)
    if fmt is Fmt.json:
        print(json.dumps(report.to_dict(), indent=2))
    elif fmt is Fmt.html:
        from vmwarden.compliance.html import render_html

        print(render_html(report))
    elif fmt is Fmt.csv:
        _compliance_csv(report)
    else:
        _compliance_table(report)


def _compliance_csv(report: ComplianceReport) -> None:
    cols = ["id", "title", "status", "open", "worst_severity", "rules", "reasons"]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(cols)
    for r in report.controls:
        row = [r.control.id, r.control.title, r.status, r.open, r.worst, ", ".join(r.rules)]
        w.writerow([for_csv(_flat(v)) for v in row] + [for_csv("; ".join(r.reasons))])
    print(buf.getvalue(), end="")


def _compliance_table(report: ComplianceReport) -> None:
    from rich.table import Table

    fw, counts, scan = report.framework, report.summary(), report.scan_facts()
    t = Table(title=f"{fw.title} {fw.version}".strip(), show_edge=False)
    for c in ("control", "status", "title", "evidence"):
        t.add_column(c, overflow="fold")
    style = {"pass": "green", "fail": "bold red", "not-assessed": "dim"}
    for r in report.controls:
        t.add_row(
            Text(visible(r.control.id)),
            Text(r.status, style=style[r.status]),
            Text(visible(r.control.title)),
            Text(visible_keep_lines(_evidence_line(r))),
        )
    out.print(t)
    last = scan["last_scan_finished"] or "none"
    out.print(
        Text(
            f"{counts['pass']} pass, {counts['fail']} fail, {counts['not-assessed']} not "
            f"assessed; last completed scan {_cell(last)}, {len(scan['hosts'])} host(s), "
            f"{scan['vms']} VM(s)"
        )
    )


def _evidence_line(r: Any) -> str:
    lines = list(r.reasons)
    lines += [f"  {x['severity']} {x['rule']}: {x['name']} on {x['host']}" for x in r.examples]
    return "\n".join(lines)

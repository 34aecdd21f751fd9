"""A compliance report as one self-contained HTML page: inline style, no script, no fetches.

An auditor opens it offline and attaches it to evidence, so nothing may load from elsewhere;
every value from outside (VM and host names, rule names, titles from a mapping file) is
escaped, and control characters are shown rather than passed to the reader's terminal.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from vmwarden.model.escape import visible_keep_lines

if TYPE_CHECKING:
    from vmwarden.compliance.evaluate import ComplianceReport, ControlResult

_STYLE = (
    "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;width:100%}"
    "th,td{border:1px solid #ccc;padding:.3em .5em;text-align:left;vertical-align:top}"
    ".pass{background:#dfd}.fail{background:#fdd}.not-assessed{background:#eee}"
    "ul{margin:0;padding-left:1.2em}"
)


def _e(text: object) -> str:
    return html.escape(visible_keep_lines("" if text is None else str(text)))


def render_html(report: ComplianceReport) -> str:
    fw = report.framework
    scan = report.scan_facts()
    summary = report.summary()
    head = (
        f"<h1>{_e(fw.title)} {_e(fw.version)}</h1>"
        f"<p>Mapping: {_e(fw.source)}. Policy: {_e(report.policy or 'none given')}. "
        f"Generated {_e(report.to_dict()['generated_at'])}.</p>"
        f"<p>Last completed scan: {_e(scan['last_scan_finished'] or 'none')}; "
        f"{len(scan['hosts'])} host(s): {_e(', '.join(scan['hosts']))}; {scan['vms']} VM(s).</p>"
        f"<p>{summary['pass']} pass, {summary['fail']} fail, "
        f"{summary['not-assessed']} not assessed.</p>"
        + "".join(f"<p><strong>warning:</strong> {_e(w)}</p>" for w in report.warnings)
    )
    rows = "".join(_row(r) for r in report.controls)
    return (
        "<!doctype html><html><head><meta charset=utf-8>"
        f"<title>vmwarden compliance: {_e(fw.name)}</title><style>{_STYLE}</style></head><body>"
        f"{head}<table><thead><tr><th>control</th><th>title</th><th>status</th>"
        "<th>evidence</th><th>rules</th><th>findings</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></body></html>"
    )


def _row(r: ControlResult) -> str:
    reasons = "".join(f"<li>{_e(why)}</li>" for why in r.reasons)
    examples = "".join(
        f"<li>{_e(x['severity'])} {_e(x['rule'])}: {_e(x['name'])} on {_e(x['host'])}</li>"
        for x in r.examples
    )
    count = f"{r.open} open" + (f", {r.excepted} excepted" if r.excepted else "")
    return (
        f"<tr class='{r.status}'><td>{_e(r.control.id)}</td><td>{_e(r.control.title)}</td>"
        f"<td>{_e(r.status)}</td><td><ul>{reasons}</ul></td>"
        f"<td>{_e(', '.join(r.rules))}</td><td>{count}<ul>{examples}</ul></td></tr>"
    )

"""Wire formats: RFC 5424 syslog framing, ArcSight CEF, OCSF Detection Finding (class 2004)."""

from __future__ import annotations

import dataclasses
import json
import socket
from datetime import date
from enum import Enum
from typing import Any

from vmwarden import __version__
from vmwarden.model.escape import for_syslog, visible
from vmwarden.notify.base import Alert

_SYSLOG_SEVERITY = {"critical": 2, "high": 3, "medium": 4, "low": 5, "info": 6}
_CEF_SEVERITY = {"critical": 10, "high": 8, "medium": 5, "low": 3, "info": 1}
_OCSF_SEVERITY = {"info": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}
_OCSF_CAPTION = {0: "Unknown", 1: "Informational", 2: "Low", 3: "Medium", 4: "High", 5: "Critical"}
_FACILITY_SECURITY = 13  # log audit


def to_json(value: Any, **kw: Any) -> str:
    """JSON text of an alert payload; evidence may hold datetimes, sets, enums, dataclasses.

    (A ``value`` filter's evidence is whatever the VM record holds at its key.) Anything else
    is written as its ``str`` rather than failing the delivery.
    """
    return json.dumps(value, default=_plain, **kw)


def _plain(value: Any) -> Any:
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    if isinstance(value, Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return str(value)


def rfc5424(alert: Alert, msg: str) -> str:
    """One RFC 5424 record on one line: ``msg`` carries VM and image names, so its line
    breaks and other controls are shown (a file name with a newline would otherwise forge a
    second record in every line-oriented collector)."""
    pri = _FACILITY_SECURITY * 8 + _SYSLOG_SEVERITY.get(alert.severity, 5)
    ts = alert.at.isoformat().replace("+00:00", "Z")
    msgid = _msgid(alert.event)
    return f"<{pri}>1 {ts} {socket.gethostname()} vmwarden - {msgid} - {for_syslog(msg)}"


def _msgid(event: str) -> str:
    """RFC 5424 MSGID: 1-32 printable US-ASCII characters, no space; else the nil value."""
    ok = 0 < len(event) <= 32 and all(33 <= ord(c) <= 126 for c in event)
    return event if ok else "-"


def _cef_escape(value: str, *, header: bool) -> str:
    """CEF escaping; line breaks are encoded everywhere, so one alert is always one line.

    (A raw newline from a VM or host name would otherwise let it forge a second event in a
    line-oriented collector.)
    """
    value = _other_controls(value)  # before the backslashes are escaped: \x1b decodes as text
    value = value.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n")
    if header:
        return value.replace("|", "\\|")
    return value.replace("=", "\\=")


def _other_controls(value: str) -> str:
    """Controls other than CR/LF (which CEF encodes itself) shown as ``\\xNN`` text."""
    return "".join(visible(c) if c not in "\r\n" else c for c in value)


def cef(alert: Alert) -> str:
    head = "|".join(
        _cef_escape(x, header=True)
        for x in ("CEF:0", "vmwarden", "vmwarden", __version__, alert.rule, alert.summary)
    )
    ext = {
        "act": alert.action or alert.event,
        "cs1Label": "vm_id",
        "cs1": alert.id,
        "dhost": alert.name,
        "shost": alert.host,
        "rt": str(int(alert.at.timestamp() * 1000)),
    }
    body = " ".join(f"{k}={_cef_escape(v, header=False)}" for k, v in ext.items())
    return f"{head}|{_CEF_SEVERITY.get(alert.severity, 5)}|{body}"


def ocsf(alert: Alert) -> dict[str, Any]:
    """OCSF 1.x Detection Finding (category 2 Findings, class 2004)."""
    activity = {"finding.opened": 1, "finding.resolved": 3}.get(alert.event, 2)
    severity_id = _OCSF_SEVERITY.get(alert.severity, 0)
    return {
        "category_uid": 2,
        "class_uid": 2004,
        "type_uid": 2004 * 100 + activity,
        "activity_id": activity,
        "time": int(alert.at.timestamp() * 1000),
        "severity_id": severity_id,
        "severity": _OCSF_CAPTION[severity_id],  # OCSF's caption for the id
        "status_id": 4 if alert.event == "finding.resolved" else 1,
        "metadata": {
            "product": {"name": "vmwarden", "vendor_name": "vmwarden", "version": __version__},
            "version": "1.1.0",
        },
        "finding_info": {
            "uid": f"{alert.rule}:{alert.id}",
            "title": alert.rule,
            "desc": alert.summary,
        },
        "resources": [
            {"uid": alert.id, "name": alert.name, "type": alert.resource, "data": alert.evidence}
        ],
        "device": {"hostname": alert.host},
    }

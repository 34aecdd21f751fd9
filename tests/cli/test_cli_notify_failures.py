"""#10.5 (part): a notify whose receiver raised is never journaled ``done``.

``vmwarden scan --enforce`` in a subprocess sends a real finding to a real OCSF file and a
real SMTP server (aiosmtpd) that refuses the recipient, or to a port nobody listens on; the
audit log (``report audit --format json``) must say ``partial``/``failed`` with the reason.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from tests.cli.conftest import Cli
from tests.notify.conftest import SmtpReceiver, smtp  # noqa: F401  (the aiosmtpd fixture)
from vmwarden.engine.fleetgen import FleetNic, FleetVM, write_fleet


def _estate(tmp_path: Path, smtp_port: int, *, ocsf: bool) -> list[str]:
    vm = FleetVM("10a5c000-0000-4000-8000-000000000001", "web01",
                 nics=[FleetNic("52:54:00:10:05:01", "prod")])  # fmt: skip
    host = write_fleet(tmp_path / "hv1.xml", [vm], ["prod", "quarantine"])
    receivers = [f'{{type: smtp, host: 127.0.0.1, port: {smtp_port}, to: ["secops@example.org"]}}']
    if ocsf:
        receivers.append(f'{{type: ocsf, path: "{tmp_path / "alerts.ocsf"}"}}')
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "version: 1\nnotify:\n"
        + "".join(f"  - {r}\n" for r in receivers)
        + "rules:\n  - {name: unregistered, resource: vm, severity: high,"
        " filters: [unregistered], actions: [notify]}\n"
    )
    return ["-c", f"test://{host}", "-p", str(policy), "--format", "json"]


def _notifies(cli: Cli) -> list[dict[str, Any]]:
    ran = cli("report", "audit", "--format", "json")
    assert ran.code == 0, ran.err
    return sorted((e for e in ran.json() if e["action"] == "notify"), key=lambda e: e["journal_id"])


def test_smtp_refusing_beside_a_working_receiver_is_partial_then_retried(
    cli: Cli,
    tmp_path: Path,
    smtp: SmtpReceiver,  # noqa: F811
) -> None:
    smtp.refuse = {"secops@example.org"}
    args = _estate(tmp_path, smtp.port, ocsf=True)
    ran = cli("scan", *args, "--enforce")
    assert "Traceback" not in ran.err
    (action,) = [a for a in json.loads(ran.out)["actions"] if a["action"] == "notify"]
    assert action["status"] == "partial"
    (entry,) = _notifies(cli)
    assert entry["status"] == "partial"
    assert "secops@example.org: 550 5.1.1 no such user here" in entry["error"]
    assert len((tmp_path / "alerts.ocsf").read_text().splitlines()) == 1  # the file got it

    smtp.refuse = set()  # the mail server is fixed: the next sweep sends it again
    assert cli("scan", *args, "--enforce").code == 0
    assert [e["status"] for e in _notifies(cli)] == ["partial", "done"]
    (env,) = smtp.envelopes
    assert env.rcpt_tos == ["secops@example.org"]


def test_smtp_unreachable_alone_is_failed_with_the_reason(cli: Cli, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: connections refused
    ran = cli("scan", *_estate(tmp_path, port, ocsf=False), "--enforce")
    assert "Traceback" not in ran.err
    (entry,) = _notifies(cli)
    assert entry["status"] == "failed"
    assert f"smtp 127.0.0.1:{port}" in entry["error"] and "refused" in entry["error"].lower()

"""SMTP against a real aiosmtpd server; OCSF Detection Finding JSON lines in a file."""

from __future__ import annotations

import json
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from tests.notify.conftest import AT, make_alert
from vmwarden import __version__
from vmwarden.notify import Dispatcher
from vmwarden.notify.receivers import OcsfFile, Smtp


def test_smtp_sends_subject_and_json_body(smtp):
    Smtp("127.0.0.1", ["secops@example.org", "oncall@example.org"], sender="vw@example.org",
         port=smtp.port).send(make_alert())  # fmt: skip
    (env,) = smtp.envelopes
    assert env.mail_from == "vw@example.org"
    assert env.rcpt_tos == ["secops@example.org", "oncall@example.org"]
    msg = message_from_bytes(env.content, policy=policy.default)
    assert msg["Subject"] == "[vmwarden] high: forbidden-software on web01"
    assert msg["To"] == "secops@example.org, oncall@example.org"
    body = json.loads(msg.get_content())
    assert body["rule"] == "forbidden-software" and body["id"].endswith("000000000001")
    assert body["evidence"] == {"packages": ["telnetd"]}
    assert body["at"] == AT.isoformat()


def test_smtp_down_is_a_failed_delivery(closed_port):
    d = Dispatcher([{"type": "smtp", "host": "127.0.0.1", "port": closed_port, "to": ["a@b"]}])
    (delivery,) = d.send(make_alert())
    assert not delivery.ok and delivery.receiver == f"smtp 127.0.0.1:{closed_port}"
    assert d.failures == 1


@pytest.mark.parametrize(
    ("severity", "sid"),
    [("info", 1), ("low", 2), ("medium", 3), ("high", 4), ("critical", 5), ("bogus", 0)],
)
def test_ocsf_severity_id(tmp_path: Path, severity, sid):
    out = tmp_path / "a.ocsf"
    OcsfFile(str(out)).send(make_alert(severity=severity))
    event = json.loads(out.read_text())
    assert event["severity_id"] == sid
    assert event["severity"] == {0: "Unknown", 1: "Informational", 2: "Low", 3: "Medium", 4: "High",
                                 5: "Critical"}[sid]  # fmt: skip


def test_ocsf_detection_finding_one_object_per_line(tmp_path: Path):
    out = tmp_path / "a.ocsf"
    receiver = OcsfFile(str(out))
    receiver.send(make_alert(evidence={"note": "multi\nline"}))
    receiver.send(make_alert(event="finding.resolved", name="db02"))
    receiver.send(make_alert(event="action.done", action="quarantine"))
    lines = out.read_text().splitlines()
    assert len(lines) == 3
    opened, resolved, acted = (json.loads(line) for line in lines)
    for event in (opened, resolved, acted):
        assert (event["category_uid"], event["class_uid"]) == (2, 2004)
        assert event["type_uid"] == 2004 * 100 + event["activity_id"]
        assert event["metadata"]["product"]["version"] == __version__
        assert event["time"] == int(AT.timestamp() * 1000)
    assert (opened["activity_id"], opened["status_id"]) == (1, 1)
    assert (resolved["activity_id"], resolved["status_id"]) == (3, 4)
    assert acted["activity_id"] == 2
    assert (
        opened["finding_info"]["uid"] == "forbidden-software:5d1a0a56-1c1e-4b0e-9c35-000000000001"
    )
    assert opened["resources"] == [
        {"uid": "5d1a0a56-1c1e-4b0e-9c35-000000000001", "name": "web01", "type": "vm",
         "data": {"note": "multi\nline"}}
    ]  # fmt: skip
    assert opened["device"] == {"hostname": "hv1"}
    assert resolved["resources"][0]["name"] == "db02"


def test_smtp_subject_shows_a_newline_in_the_name_instead_of_losing_the_alert(smtp):
    name = "web01\r\nBcc: victim@example.org\r\n\r\nforged body\x1b[2J"
    Smtp("127.0.0.1", ["secops@example.org"], port=smtp.port).send(make_alert(name=name))
    (env,) = smtp.envelopes
    assert env.rcpt_tos == ["secops@example.org"]
    msg = message_from_bytes(env.content, policy=policy.default)
    assert msg["Subject"] == (
        "[vmwarden] high: forbidden-software on "
        "web01\\r\\nBcc: victim@example.org\\r\\n\\r\\nforged body\\x1b[2J"
    )
    assert msg["Bcc"] is None
    assert json.loads(msg.get_content())["name"] == name  # the body keeps the exact value


def test_smtp_refusing_one_recipient_is_a_failed_delivery_with_the_reason(smtp):
    smtp.refuse = {"gone@example.org"}
    d = Dispatcher([{"type": "smtp", "host": "127.0.0.1", "port": smtp.port,
                     "to": ["secops@example.org", "gone@example.org"]}])  # fmt: skip
    (delivery,) = d.send(make_alert())
    assert not delivery.ok
    assert "gone@example.org: 550 5.1.1 no such user here" in delivery.error
    assert len(smtp.envelopes) == 1  # secops got it; the failure is still reported


def test_smtp_refusing_every_recipient_or_the_data_is_a_failed_delivery(smtp):
    smtp.refuse = {"secops@example.org"}
    spec = {"type": "smtp", "host": "127.0.0.1", "port": smtp.port, "to": ["secops@example.org"]}
    (delivery,) = Dispatcher([spec]).send(make_alert())
    assert not delivery.ok and "550 5.1.1 no such user here" in delivery.error
    smtp.refuse = set()
    smtp.data_reply = "554 5.7.1 message rejected as spam"
    (delivery,) = Dispatcher([spec]).send(make_alert())
    assert not delivery.ok and "554 5.7.1 message rejected as spam" in delivery.error
    assert smtp.envelopes == []

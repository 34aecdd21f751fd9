"""``Dispatcher``: fans out to every receiver, never raises, counts failures; the enforce hook."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vmwarden.model import VM, Finding, State
from vmwarden.model.finding import Severity
from vmwarden.notify import Alert, Dispatcher, notifiers

VM_ = VM(id="uuid-1", name="web01", host="hv1", uri="test:///hv1.xml", state=State.RUNNING)


def test_call_has_the_enforce_notifier_signature_and_builds_the_alert(webhook, tmp_path: Path):
    out = tmp_path / "a.ocsf"
    d = Dispatcher([{"type": "webhook", "url": webhook.url}, {"type": "ocsf", "path": str(out)}])
    finding = Finding("forbidden-software", "vm", "uuid-1", "web01", "hv1", Severity.CRITICAL,
                      {"packages": ["telnetd"]})  # fmt: skip
    result = d(VM_, finding, "forbidden-software")
    label = f"webhook {webhook.url.removesuffix('/hook')}"  # no path: it may be a secret
    assert result == [(label, True, None), (f"ocsf {out}", True, None)]
    body = webhook.requests[0]["json"]
    keys = ("event", "rule", "severity", "resource", "id", "name", "host")
    assert {k: body[k] for k in keys} == {
        "event": "finding.opened", "rule": "forbidden-software", "severity": "critical",
        "resource": "vm", "id": "uuid-1", "name": "web01", "host": "hv1",
    }  # fmt: skip
    assert body["evidence"] == {"packages": ["telnetd"]}
    assert json.loads(out.read_text())["severity_id"] == 5


def test_call_without_a_finding_is_a_manual_info_alert(webhook):
    d = Dispatcher([{"type": "webhook", "url": webhook.url}])
    assert d(VM_, None, None) == [(f"webhook {webhook.url.removesuffix('/hook')}", True, None)]
    body = webhook.requests[0]["json"]
    assert (body["rule"], body["severity"], body["resource"], body["evidence"]) == (
        "manual", "info", "vm", {}
    )  # fmt: skip


def test_one_failing_receiver_does_not_stop_the_others(webhook, closed_port, tmp_path: Path):
    d = Dispatcher(
        [
            {"type": "webhook", "url": f"http://127.0.0.1:{closed_port}/", "retries": 0},
            {"type": "webhook", "url": webhook.url},
            {"type": "ocsf", "path": str(tmp_path / "no" / "dir.ocsf")},
        ]
    )
    result = d(VM_, None, "r")
    assert [ok for _, ok, _ in result] == [False, True, False]
    assert all(err for _, ok, err in result if not ok)
    assert len(webhook.requests) == 1
    assert d.failures == 2


def test_a_receiver_with_a_bug_is_recorded_not_raised():
    class Broken:
        label = "broken"

        def send(self, alert: Alert) -> None:
            raise ValueError("boom")

    d = Dispatcher([])
    d.receivers.append(Broken())
    (delivery,) = d.send(Alert("finding.opened", "r", "high", "vm", "i", "n", "h"))
    assert (delivery.ok, delivery.error) == (False, "ValueError: boom")
    assert d.failures == 1


def test_every_documented_notifier_is_registered():
    assert set(notifiers.names()) == {"webhook", "syslog", "smtp", "ocsf"}


def test_unknown_notifier_type_lists_the_valid_ones():
    with pytest.raises(KeyError, match="webhook"):
        Dispatcher([{"type": "pager"}])

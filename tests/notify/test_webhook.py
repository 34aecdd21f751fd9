"""The webhook notifier against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import pytest

from tests.notify.conftest import AT, make_alert
from vmwarden.errors import NotifyError
from vmwarden.notify import Dispatcher
from vmwarden.notify.receivers import Webhook


def test_posts_the_alert_as_json(webhook):
    Webhook(webhook.url, headers={"X-Token": "s3cret"}).send(make_alert(action="quarantine"))
    (req,) = webhook.requests
    assert req["path"] == "/hook"
    assert req["headers"]["Content-Type"] == "application/json"
    assert req["headers"]["X-Token"] == "s3cret"
    assert req["json"] == {
        "event": "finding.opened",
        "rule": "forbidden-software",
        "severity": "high",
        "resource": "vm",
        "id": "5d1a0a56-1c1e-4b0e-9c35-000000000001",
        "name": "web01",
        "host": "hv1",
        "evidence": {"packages": ["telnetd"]},
        "action": "quarantine",
        "at": AT.isoformat(),
    }


def test_retries_after_a_server_error(webhook):
    webhook.statuses = [500]
    d = Dispatcher([{"type": "webhook", "url": webhook.url, "retries": 2}])
    (delivery,) = d.send(make_alert())
    assert delivery.ok and d.failures == 0
    assert len(webhook.requests) == 2
    assert webhook.requests[0]["json"] == webhook.requests[1]["json"]


def test_gives_up_after_its_retries(webhook):
    webhook.statuses = [500, 503, 500, 500]
    d = Dispatcher([{"type": "webhook", "url": webhook.url, "retries": 1}])
    (delivery,) = d.send(make_alert())
    assert not delivery.ok and "503" in delivery.error
    assert len(webhook.requests) == 2
    assert d.failures == 1


def test_down_receiver_fails_the_delivery_and_dispatcher_does_not_raise(closed_port):
    d = Dispatcher([{"type": "webhook", "url": f"http://127.0.0.1:{closed_port}/", "retries": 0}])
    (delivery,) = d.send(make_alert())
    assert not delivery.ok
    assert delivery.receiver == f"webhook http://127.0.0.1:{closed_port}"
    assert "refused" in delivery.error.lower()
    d.send(make_alert())
    assert d.failures == 2


def test_hung_receiver_times_out_into_a_failed_delivery(silent_port):
    url = f"http://127.0.0.1:{silent_port}/"
    d = Dispatcher([{"type": "webhook", "url": url, "timeout": 0.3, "retries": 0}])
    (delivery,) = d.send(make_alert())
    assert not delivery.ok and "timed out" in delivery.error
    assert d.failures == 1


def test_receiver_answering_garbage_is_a_failed_delivery_not_an_exception(garbage_http_port):
    url = f"http://127.0.0.1:{garbage_http_port}/"
    d = Dispatcher([{"type": "webhook", "url": url, "retries": 1}])
    (delivery,) = d.send(make_alert())
    assert not delivery.ok and delivery.error
    assert d.failures == 1


def test_evidence_that_is_not_plain_json_is_still_delivered(webhook):
    from datetime import UTC, datetime

    alert = make_alert(evidence={"first_seen": datetime(2024, 1, 2, tzinfo=UTC), "ids": {3}})
    (delivery,) = Dispatcher([{"type": "webhook", "url": webhook.url}]).send(alert)
    assert delivery.ok, delivery.error
    (req,) = webhook.requests
    assert req["json"]["evidence"] == {"first_seen": "2024-01-02T00:00:00+00:00", "ids": [3]}


def test_only_http_urls_are_accepted():
    with pytest.raises(NotifyError, match="http"):
        Webhook("ftp://127.0.0.1/hook")


def test_the_label_names_scheme_and_host_never_the_secret_path_or_credentials():
    """#11.4: the label is served by /state and /metrics; a Slack-style URL's path is its
    secret, and user:password@ would be one too."""
    hook = Webhook("https://user:pw@hooks.example.com:8443/services/T00/B00/XXXXsecret?t=1")
    assert hook.label == "webhook https://hooks.example.com:8443"
    assert Webhook("https://hooks.example.com/services/XXXXsecret").label == (
        "webhook https://hooks.example.com"
    )

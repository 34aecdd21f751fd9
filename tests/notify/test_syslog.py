"""Syslog notifier: RFC 5424 framing and CEF payloads, over real UDP and TCP sockets."""

from __future__ import annotations

import re
import socket
import threading

import pytest

from tests.notify.conftest import AT, make_alert
from vmwarden import __version__
from vmwarden.errors import NotifyError
from vmwarden.notify import Dispatcher
from vmwarden.notify.receivers import Syslog

RFC5424 = re.compile(
    r"<(?P<pri>\d{1,3})>1 (?P<ts>\S+) (?P<host>\S+) vmwarden - (?P<event>\S+) - (?P<msg>.*)\Z",
    re.S,
)


def _udp(listener: socket.socket, alert, fmt: str = "rfc5424") -> str:
    port = listener.getsockname()[1]
    Syslog(f"127.0.0.1:{port}", format=fmt, protocol="udp").send(alert)
    data, _ = listener.recvfrom(65536)
    return data.decode()


def _cef_fields(msg: str) -> list[str]:
    """Split a CEF message on unescaped pipes (7 header fields, then the extension)."""
    return re.split(r"(?<!\\)\|", msg, maxsplit=7)


def _cef_ext(ext: str) -> dict[str, str]:
    """Parse ``k=v k=v`` where values may contain spaces and escaped ``=``."""
    pairs = re.findall(r"(\w+)=((?:\\.|[^\\=])*?)(?=\s+\w+=|\Z)", ext)
    return {
        k: re.sub(r"\\(.)", lambda m: {"n": "\n", "r": "\r"}.get(m[1], m[1]), v) for k, v in pairs
    }


@pytest.mark.parametrize(
    ("severity", "pri"),
    [("critical", 106), ("high", 107), ("medium", 108), ("low", 109), ("info", 110)],
)
def test_rfc5424_framing_over_udp(udp_listener, severity, pri):
    line = _udp(udp_listener, make_alert(severity=severity))
    m = RFC5424.match(line)
    assert m, line
    assert int(m["pri"]) == pri  # facility 13 (log audit) * 8 + severity
    assert m["ts"] == "2024-05-17T08:30:15.250000Z"
    assert m["host"] == socket.gethostname()
    assert m["event"] == "finding.opened"
    assert m["msg"] == "vmwarden finding.opened: forbidden-software on vm web01 (hv1)"


def test_cef_header_and_extension(udp_listener):
    line = _udp(udp_listener, make_alert(action="quarantine"), "cef")
    m = RFC5424.match(line)
    assert m
    fields = _cef_fields(m["msg"])
    assert fields[:5] == ["CEF:0", "vmwarden", "vmwarden", __version__, "forbidden-software"]
    assert fields[5] == "vmwarden finding.opened: quarantine forbidden-software on vm web01 (hv1)"
    assert fields[6] == "8"  # high
    assert _cef_ext(fields[7]) == {
        "act": "quarantine",
        "cs1Label": "vm_id",
        "cs1": "5d1a0a56-1c1e-4b0e-9c35-000000000001",
        "dhost": "web01",
        "shost": "hv1",
        "rt": str(int(AT.timestamp() * 1000)),
    }


def test_cef_escapes_pipes_backslashes_equals_and_newlines(udp_listener):
    alert = make_alert(rule="a|b\\c", name="web=01 x\\y|z", host="hv\r\n1")
    line = _udp(udp_listener, alert, "cef")
    msg = RFC5424.match(line)["msg"]
    fields = _cef_fields(msg)
    assert len(fields) == 8
    assert fields[4] == "a\\|b\\\\c"  # header: | and \ escaped
    assert "web=01 x\\\\y\\|z" in fields[5]
    ext = fields[7]
    assert "dhost=web\\=01 x\\\\y|z " in ext  # extension: = and \ escaped, | left alone
    assert "shost=hv\\r\\n1 " in ext
    assert "\n" not in msg and "\r" not in msg  # one alert, one line
    parsed = _cef_ext(ext)
    assert parsed["dhost"] == "web=01 x\\y|z" and parsed["shost"] == "hv\r\n1"


@pytest.mark.parametrize("fmt", ["rfc5424", "cef"])
def test_tcp_uses_octet_counting(tcp_listener, fmt):
    target = Syslog(f"127.0.0.1:{tcp_listener.port}", format=fmt, protocol="tcp")
    alerts = [make_alert(name="wéb01"), make_alert(name="db02", severity="low")]
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.extend(tcp_listener.receive() for _ in alerts))
    reader.start()
    for alert in alerts:
        target.send(alert)
    reader.join(timeout=10)
    for data, alert in zip(got, alerts, strict=True):
        count, sep, frame = data.partition(b" ")
        assert sep and int(count) == len(frame)  # bytes, not characters (é is two)
        assert RFC5424.match(frame.decode())
        assert alert.name in frame.decode()


def test_tcp_receiver_down_is_a_failed_delivery(closed_port):
    d = Dispatcher([{"type": "syslog", "address": f"127.0.0.1:{closed_port}", "protocol": "tcp"}])
    (delivery,) = d.send(make_alert())
    assert not delivery.ok and "refused" in delivery.error.lower()
    assert d.failures == 1


@pytest.mark.parametrize(
    "kwargs",
    [{"address": "no-port"}, {"address": "h:x"}, {"address": "h:1", "format": "json"},
     {"address": "h:1", "protocol": "sctp"}],
)  # fmt: skip
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(NotifyError):
        Syslog(**kwargs)


@pytest.mark.parametrize("fmt", ["rfc5424", "cef"])
def test_a_name_with_a_newline_is_one_record_over_udp(udp_listener, fmt):
    """An image file named with a newline and a syslog header forges no second record."""
    name = "evil\n<13>1 2024-05-17T08:30:15Z hv1 sshd - - - Accepted root\x1b[2J.qcow2"
    port = udp_listener.getsockname()[1]
    Syslog(f"127.0.0.1:{port}", format=fmt).send(make_alert(name=name, resource="image"))
    data, _ = udp_listener.recvfrom(65536)
    udp_listener.settimeout(0.3)
    with pytest.raises(TimeoutError):
        udp_listener.recvfrom(65536)  # one datagram
    line = data.decode()
    assert "\n" not in line and "\r" not in line and "\x1b" not in line
    m = RFC5424.match(line)
    assert m and m["event"] == "finding.opened"
    if fmt == "rfc5424":
        assert m["msg"].endswith(
            "image evil\\n<13>1 2024-05-17T08:30:15Z hv1 sshd - - - Accepted root\\x1b[2J.qcow2"
            " (hv1)"
        )
    else:
        parsed = _cef_ext(_cef_fields(m["msg"])[7])
        assert parsed["dhost"] == name.replace("\x1b", "\\x1b")  # newline decoded, ESC shown

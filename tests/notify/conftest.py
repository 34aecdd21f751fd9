"""Real receivers on 127.0.0.1 for the notifier tests: HTTP, syslog (UDP/TCP), SMTP."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from vmwarden.notify import Alert

AT = datetime(2024, 5, 17, 8, 30, 15, 250000, tzinfo=UTC)


def make_alert(**over: Any) -> Alert:
    fields: dict[str, Any] = {
        "event": "finding.opened",
        "rule": "forbidden-software",
        "severity": "high",
        "resource": "vm",
        "id": "5d1a0a56-1c1e-4b0e-9c35-000000000001",
        "name": "web01",
        "host": "hv1",
        "evidence": {"packages": ["telnetd"]},
        "at": AT,
    }
    fields.update(over)
    return Alert(**fields)


@dataclass
class WebhookReceiver:
    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # answers to give, then 200


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            receiver.requests.append(
                {"path": self.path, "headers": dict(self.headers), "json": json.loads(body)}
            )
            status = receiver.statuses.pop(0) if receiver.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield receiver
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def closed_port() -> int:
    """A port nothing listens on (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers (a hung receiver)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield s.getsockname()[1]


@pytest.fixture
def garbage_http_port() -> Iterator[int]:
    """A port that answers every request with something that is not HTTP."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.05)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                client, _ = srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(10)
            with client:
                client.recv(65536)
                client.sendall(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield srv.getsockname()[1]
    stop.set()
    thread.join(timeout=5)
    srv.close()


@pytest.fixture
def udp_listener() -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(10)
        yield s


@dataclass
class TcpListener:
    port: int
    sock: socket.socket

    def receive(self) -> bytes:
        """Everything one client sent, until it closed the connection."""
        client, _ = self.sock.accept()
        client.settimeout(10)
        data = b""
        with client:
            while chunk := client.recv(65536):
                data += chunk
        return data


@pytest.fixture
def tcp_listener() -> Iterator[TcpListener]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        s.settimeout(10)
        yield TcpListener(s.getsockname()[1], s)


@dataclass
class SmtpReceiver:
    port: int
    envelopes: list[Any] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)  # recipients answered 550
    data_reply: str = "250 OK"  # the answer to DATA


@pytest.fixture
def smtp() -> Iterator[SmtpReceiver]:
    receiver = SmtpReceiver(port=0)

    class Handler:
        async def handle_RCPT(
            self, server: Any, session: Any, envelope: Any, address: str, options: Any
        ) -> str:
            if address in receiver.refuse:
                return "550 5.1.1 no such user here"
            envelope.rcpt_tos.append(address)
            return "250 OK"

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            if receiver.data_reply.startswith("250"):
                receiver.envelopes.append(envelope)
            return receiver.data_reply

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        receiver.port = s.getsockname()[1]
    controller = Controller(Handler(), hostname="127.0.0.1", port=receiver.port)
    controller.start()
    yield receiver
    controller.stop()

"""The built-in receivers. Adding one: a small class with ``label`` and ``send``, registered."""

from __future__ import annotations

import http.client
import smtplib
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from email.message import EmailMessage
from pathlib import Path

from vmwarden.errors import NotifyError
from vmwarden.model.escape import for_header
from vmwarden.notify.base import Alert, notifiers
from vmwarden.notify.formats import cef, ocsf, rfc5424, to_json


@notifiers.register("webhook")
class Webhook:
    """POSTs the alert as JSON. ``{type: webhook, url: "http://127.0.0.1:9000/hook"}``"""

    def __init__(
        self, url: str, timeout: float = 5.0, retries: int = 2, headers: dict | None = None
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise NotifyError(f"webhook url must be http(s): {url!r}")
        self.url, self.timeout, self.retries = url, timeout, retries
        self.headers = {"Content-Type": "application/json", **(headers or {})}
        # scheme and host only: a webhook's path is often its secret (Slack-style URLs), and
        # the label is shown in /state, /metrics and logs
        parts = urllib.parse.urlsplit(url)
        try:
            port = f":{parts.port}" if parts.port else ""
        except ValueError:
            raise NotifyError("webhook url has an invalid port") from None
        self.label = f"webhook {parts.scheme}://{parts.hostname}{port}"

    def send(self, alert: Alert) -> None:
        body = to_json(alert.to_dict()).encode()
        delay = 0.2
        for attempt in range(self.retries + 1):
            req = urllib.request.Request(self.url, data=body, headers=self.headers, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    resp.read()
                return
            # HTTPException: a receiver that answers something other than HTTP.
            except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
                if attempt == self.retries:
                    raise NotifyError(f"{self.label}: {exc}") from exc
                time.sleep(delay)
                delay *= 2


@notifiers.register("syslog")
class Syslog:
    """RFC 5424 or CEF over UDP or TCP.

    ``{type: syslog, address: "127.0.0.1:5514", format: cef, protocol: udp}``
    """

    def __init__(
        self, address: str, format: str = "rfc5424", protocol: str = "udp", timeout: float = 3.0
    ) -> None:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise NotifyError(f"syslog address must be HOST:PORT, got {address!r}")
        if format not in ("rfc5424", "cef") or protocol not in ("udp", "tcp"):
            raise NotifyError("syslog format is rfc5424|cef and protocol udp|tcp")
        self.addr = (host.strip("[]"), int(port))
        self.format, self.protocol, self.timeout = format, protocol, timeout
        self.label = f"syslog {protocol}://{address} ({format})"

    def send(self, alert: Alert) -> None:
        text = cef(alert) if self.format == "cef" else alert.summary
        line = rfc5424(alert, text).encode()
        if self.protocol == "udp":
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.sendto(line, self.addr)
            return
        with socket.create_connection(self.addr, timeout=self.timeout) as s:
            s.sendall(f"{len(line)} ".encode() + line)  # RFC 6587 octet counting


@notifiers.register("smtp")
class Smtp:
    """Plain-text email. ``{type: smtp, host: 127.0.0.1, port: 25, sender: a@x, to: [b@x]}``"""

    def __init__(
        self,
        host: str,
        to: list[str],
        sender: str = "vmwarden@localhost",
        port: int = 25,
        starttls: bool = False,
        timeout: float = 5.0,
    ) -> None:
        self.host, self.port, self.to, self.sender = host, port, to, sender
        self.starttls, self.timeout = starttls, timeout
        self.label = f"smtp {host}:{port}"

    def send(self, alert: Alert) -> None:
        """Raises (so the delivery is recorded failed, with the server's reason) unless the
        server took the message for every recipient.

        The subject carries the VM's name: its line breaks are shown, never sent (a raw one
        is refused by ``email`` — the alert would be lost — or would start a new header).
        """
        msg = EmailMessage()
        msg["Subject"] = for_header(f"[vmwarden] {alert.severity}: {alert.rule} on {alert.name}")
        msg["From"], msg["To"] = self.sender, ", ".join(self.to)
        msg.set_content(to_json(alert.to_dict(), indent=2))
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                if self.starttls:
                    smtp.starttls()
                refused = smtp.send_message(msg)
        except smtplib.SMTPRecipientsRefused as exc:  # every recipient refused
            raise NotifyError(f"{self.label}: {_refusals(exc.recipients)}") from exc
        except smtplib.SMTPResponseException as exc:
            reason = _text(exc.smtp_error)
            raise NotifyError(f"{self.label}: {exc.smtp_code} {reason}") from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise NotifyError(f"{self.label}: {type(exc).__name__}: {exc}") from exc
        if refused:  # smtplib returns, not raises, when only some recipients were refused
            raise NotifyError(f"{self.label}: {_refusals(refused)}")


def _refusals(refused: dict[str, tuple[int, bytes]]) -> str:
    """``refused b@x: 550 no such user; …`` from smtplib's recipient → (code, reply) map."""
    parts = [f"{rcpt}: {code} {_text(reply)}" for rcpt, (code, reply) in refused.items()]
    return "recipients refused: " + "; ".join(parts)


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


@notifiers.register("ocsf")
class OcsfFile:
    """OCSF Detection Finding JSON lines appended to a file.

    ``{type: ocsf, path: /var/log/vmwarden.ocsf}``
    """

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.label = f"ocsf {path}"

    def send(self, alert: Alert) -> None:
        # Alerts name VMs and findings: the file is 0600 (an existing looser one is tightened).
        from vmwarden.store.private import open_append

        with open(open_append(self.path), "a", encoding="utf-8") as fh:
            fh.write(to_json(ocsf(alert)) + "\n")

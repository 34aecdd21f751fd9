"""Prometheus metrics of the watch daemon, and a tiny asyncio HTTP server for ``/metrics``.

The text exposition format (version 0.0.4) is small enough to write directly: counters,
gauges and one histogram, each with labels. No dependency, no process-global registry (two
daemons in one test process keep their own numbers).

Every request to the server needs ``Authorization: Bearer <token>``, loopback or not: the
estate's shape (hosts, held VMs, receivers) is not for anonymous eyes, and behind a reverse
proxy every client looks local. Checking the token is the caller's ``authorize`` (the API's
token store lives in a later layer); without one, every request is refused.

Example::

    metrics = WatchMetrics()
    metrics.events.inc(uri="qemu:///system", kind="lifecycle")
    server = await serve_metrics("127.0.0.1", 9464, metrics.render, authorize=check_token)
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any

from vmwarden.errors import VmwardenError

log = logging.getLogger(__name__)

MAX_HEADERS = 100  # header lines a metrics client may send


class ListenError(VmwardenError):
    """A TCP address to serve on cannot be had (port busy, address not ours, no permission)."""

    exit_code = 2  # fix the command line (or stop the other server), then run again


def listen_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``, bound now: a busy port is one clear
    ``ListenError`` before anything starts, not a traceback from deep in a server."""
    where = f"{host}:{port}"
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise ListenError(f"cannot listen on {where}: {exc.strerror or exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ListenError(
            f"cannot listen on {where}: {exc.strerror or exc} "
            "(another vmwarden, or another service, on that port?)"
        ) from None
    return sock


Labels = tuple[tuple[str, str], ...]

# Event-to-action latency buckets (seconds): quarantine takes tens of milliseconds on a host.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def _key(labels: dict[str, str]) -> Labels:
    return tuple(sorted((k, str(v)) for k, v in labels.items()))


def _fmt_labels(labels: Labels, extra: Iterable[tuple[str, str]] = ()) -> str:
    pairs = [*labels, *extra]
    if not pairs:
        return ""
    body = ",".join(f'{k}="{_escape(v)}"' for k, v in pairs)
    return "{" + body + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class _Metric:
    kind = "untyped"

    def __init__(self, name: str, doc: str) -> None:
        self.name, self.doc = name, doc
        self._lock = threading.Lock()
        self._values: dict[Labels, float] = {}

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.doc}", f"# TYPE {self.name} {self.kind}"]

    def render(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return self.header() + [f"{self.name}{_fmt_labels(k)} {_num(v)}" for k, v in items]

    def value(self, **labels: str) -> float:
        with self._lock:
            return self._values.get(_key(labels), 0.0)


class Counter(_Metric):
    kind = "counter"

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = _key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount


class Gauge(_Metric):
    kind = "gauge"

    def set(self, value: float, **labels: str) -> None:
        with self._lock:
            self._values[_key(labels)] = float(value)

    def replace(self, values: dict[Labels, float]) -> None:
        """Set the whole family at once (labels no longer present disappear)."""
        with self._lock:
            self._values = dict(values)


class Histogram(_Metric):
    kind = "histogram"

    def __init__(self, name: str, doc: str, buckets: tuple[float, ...]) -> None:
        super().__init__(name, doc)
        self.buckets = tuple(sorted(buckets))
        self._obs: dict[Labels, list[float]] = {}  # per-bucket counts + [sum, count]
        self.samples: list[float] = []  # every observation, for reports (bounded below)

    def observe(self, value: float, **labels: str) -> None:
        key = _key(labels)
        with self._lock:
            row = self._obs.setdefault(key, [0.0] * (len(self.buckets) + 2))
            i = bisect.bisect_left(self.buckets, value)
            if i < len(self.buckets):
                row[i] += 1
            row[-2] += value
            row[-1] += 1
            if len(self.samples) < 100_000:
                self.samples.append(value)

    def render(self) -> list[str]:
        lines = self.header()
        with self._lock:
            items = sorted((k, list(v)) for k, v in self._obs.items())
        for key, row in items:
            running = 0.0
            for bound, count in zip(self.buckets, row, strict=False):
                running += count
                lines.append(
                    f"{self.name}_bucket{_fmt_labels(key, [('le', _num(bound))])} {_num(running)}"
                )
            lines.append(f"{self.name}_bucket{_fmt_labels(key, [('le', '+Inf')])} {_num(row[-1])}")
            lines.append(f"{self.name}_sum{_fmt_labels(key)} {_num(row[-2])}")
            lines.append(f"{self.name}_count{_fmt_labels(key)} {_num(row[-1])}")
        return lines


class WatchMetrics:
    """Every metric the daemon exports."""

    def __init__(self) -> None:
        self.vms = Gauge("vmwarden_vms", "VMs known to the daemon, by host and state.")
        self.findings = Gauge("vmwarden_findings", "Open findings by severity.")
        self.quarantined = Gauge("vmwarden_quarantined_vms", "VMs held in quarantine.")
        self.connected = Gauge(
            "vmwarden_connection_up", "1 while the libvirt connection to the URI is open."
        )
        self.reconnects = Counter("vmwarden_reconnects_total", "Reconnections per URI.")
        self.events = Counter(
            "vmwarden_events_total", "VM events received, by kind (started, stopped, ...)."
        )
        self.ignored = Counter(
            "vmwarden_events_ignored_total", "Events of VMs outside the watched name patterns."
        )
        self.handled = Counter(
            "vmwarden_events_handled_total", "Events taken into a (coalesced) VM update."
        )
        self.actions = Counter("vmwarden_actions_total", "Actions taken, by action and actor.")
        self.sweeps = Counter("vmwarden_sweeps_total", "Full reconciles, by outcome.")
        self.alerts = Gauge("vmwarden_alerts", "Alerts per receiver: sent, failed, dropped.")
        self.alerts_dropped = Gauge(
            "vmwarden_alerts_dropped", "Alerts dropped (full queue, shutdown), by severity."
        )
        self.latency = Histogram(
            "vmwarden_event_to_action_seconds",
            "From a libvirt event's arrival to the action it caused being in effect.",
            LATENCY_BUCKETS,
        )
        self.disk_reads = Gauge(
            "vmwarden_disk_reads",
            "1 per host: how the last reconcile read its disks (via=worker|local|connection).",
        )
        self.refresh: Callable[[], None] | None = None  # filled by the daemon: gauges from state

    def all(self) -> list[_Metric]:
        return [
            self.vms,
            self.findings,
            self.quarantined,
            self.connected,
            self.reconnects,
            self.events,
            self.ignored,
            self.handled,
            self.actions,
            self.sweeps,
            self.alerts,
            self.alerts_dropped,
            self.latency,
            self.disk_reads,
        ]

    def render(self) -> str:
        if self.refresh is not None:
            try:
                self.refresh()
            except Exception:  # a scrape must answer even when the state is mid-update
                log.exception("refreshing metrics failed")
        lines: list[str] = []
        for metric in self.all():
            lines += metric.render()
        return "\n".join(lines) + "\n"


CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


async def serve_metrics(
    host: str,
    port: int,
    render: Callable[[], str],
    extra: dict[str, Callable[[], Any]] | None = None,
    *,
    authorize: Callable[[str], bool] | None = None,
) -> asyncio.AbstractServer:
    """Serve ``GET /metrics`` (and ``extra`` paths as JSON text) until the server is closed.

    ``render`` runs in a worker thread (it may read the store), as does ``authorize(token)``
    (the bearer token a request carries; None: no request is authorized). Raises
    ``ListenError`` when ``host:port`` cannot be had.
    """
    routes = dict(extra or {})
    sock = listen_socket(host, port)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 10)
            token = None
            for _ in range(MAX_HEADERS):
                line = await asyncio.wait_for(reader.readline(), 10)
                if line in (b"\r\n", b"\n", b""):
                    break
                name, _, value = line.decode("latin-1").partition(":")
                scheme, _, credential = value.strip().partition(" ")
                if name.strip().lower() == "authorization" and scheme.lower() == "bearer":
                    token = credential.strip()
            else:
                raise ConnectionError("too many header lines")
            parts = request.decode("latin-1").split()
            path = parts[1].split("?")[0] if len(parts) >= 2 else ""
            allowed = False
            if token and authorize is not None:
                try:
                    allowed = bool(await asyncio.to_thread(authorize, token))
                except Exception:  # the store away: refuse, never serve unauthenticated
                    log.exception("metrics: checking a token failed")
            extra_headers = ""
            if len(parts) < 2 or parts[0] != "GET":
                status, ctype, body = "405 Method Not Allowed", "text/plain", "GET only\n"
            elif not allowed:
                status, ctype = "401 Unauthorized", "text/plain"
                body = "send Authorization: Bearer <token> (vmwarden user add)\n"
                extra_headers = "WWW-Authenticate: Bearer\r\n"
            elif path == "/metrics":
                status, ctype = "200 OK", CONTENT_TYPE
                body = await asyncio.to_thread(render)
            elif path in routes:
                status, ctype = "200 OK", "application/json"
                body = await asyncio.to_thread(routes[path])
            else:
                status, ctype, body = "404 Not Found", "text/plain", "try /metrics\n"
            data = body.encode()
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(data)}\r\n"
                f"{extra_headers}Connection: close\r\n\r\n".encode()
                + data
            )
            await writer.drain()
        except (TimeoutError, ConnectionError, ValueError) as exc:  # ValueError: line too long
            log.debug("metrics client: %s", exc)
        finally:
            writer.close()

    try:
        return await asyncio.start_server(handle, sock=sock)
    except BaseException:
        sock.close()
        raise

"""EC2 for ``watch``: polled, or fed by an SQS queue of EventBridge state-change events.

EC2 pushes nothing to a client. By default ``open_event_feed("aws://…")`` raises
``NoEventFeedError`` and the engine polls the region (``engine.watch.poll``: one paginated
inventory every ``POLL_EVERY`` seconds, diffed into neutral events; a start is seen within
that interval plus one inventory).

With ``aws://REGION?sqs=QUEUE`` the feed reads the SQS queue (by name, in the same region and
account) to which an EventBridge rule sends ``EC2 Instance State-change Notification``
events::

    aws events put-rule --name vmwarden-ec2 --event-pattern \\
      '{"source":["aws.ec2"],"detail-type":["EC2 Instance State-change Notification"]}'
    aws events put-targets --rule vmwarden-ec2 --targets Id=1,Arn=<queue ARN>

(the queue's policy must let ``events.amazonaws.com`` send to it). Each message becomes a
``VmEvent`` (``pending``/``running`` → started, ``stopped``/``shutting-down`` → stopped,
``terminated`` → undefined, ``stopping`` → other) as soon as SQS hands it over (long polls of
``WAIT`` seconds), and is deleted once delivered. Only state changes come this way: tags and
ENI changes are found by the daemon's periodic reconcile, as with any feed. A message that is
not such an event, is for another region, or names no valid instance id is dropped (logged,
deleted): the queue is input, not trusted. Zero exposure needs no feed at all: the gate
isolates stopped instances it would hold ahead of their start (``engine.watch.gate``), and an
ENI's groups hold whether the instance runs or not, so it boots isolated.

No boto3 at import: the connector and the SQS client are opened by ``SqsFeed.open``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
from collections.abc import Callable
from typing import Any

from vmwarden.connectors.aws.uri import AwsTarget, open_client, parse_aws_uri
from vmwarden.connectors.base import Connector, NoEventFeedError, register_event_feed
from vmwarden.errors import DomainGoneError, VmwardenError
from vmwarden.model import events as ev
from vmwarden.model.events import VmEvent

log = logging.getLogger(__name__)

STATE_CHANGE = "EC2 Instance State-change Notification"
WAIT = 2  # seconds of one SQS long poll: also how long ``close`` may wait for the thread
_KINDS = {
    "pending": ev.STARTED,
    "running": ev.STARTED,
    "stopping": ev.OTHER,
    "stopped": ev.STOPPED,
    "shutting-down": ev.STOPPED,
    "terminated": ev.UNDEFINED,
}
_INSTANCE = re.compile(r"^i-[0-9a-f]{8,17}$")


def state_change(body: str, region: str) -> tuple[str, str] | None:
    """``(instance id, state)`` of an EventBridge EC2 state-change event for ``region``, or
    None for anything else (never raises: the body is whatever reached the queue)."""
    try:
        doc = json.loads(body)
    except (ValueError, TypeError):
        return None
    if not isinstance(doc, dict) or doc.get("source") != "aws.ec2":
        return None
    if doc.get("detail-type") != STATE_CHANGE or doc.get("region", region) != region:
        return None
    detail = doc.get("detail")
    if not isinstance(detail, dict):
        return None
    iid, state = detail.get("instance-id"), detail.get("state")
    if not isinstance(iid, str) or not _INSTANCE.match(iid) or state not in _KINDS:
        return None
    return iid, str(state)


@register_event_feed("aws")
def open_aws_feed(
    uri: str,
    *,
    on_event: Callable[[VmEvent], None],
    on_close: Callable[[str], None],
    keepalive: tuple[int, int] = (5, 3),
) -> SqsFeed:
    """The SQS feed of ``aws://REGION?sqs=QUEUE``; ``NoEventFeedError`` without ``sqs=``."""
    target = parse_aws_uri(uri)
    if target.sqs is None:
        raise NoEventFeedError(
            f"{uri}: EC2 pushes no events; polling the region",
            hint="add ?sqs=QUEUE (an SQS queue EventBridge feeds with EC2 instance "
            "state-change events) to see starts as they happen",
        )
    return SqsFeed(uri, target, on_event=on_event, on_close=on_close)


class SqsFeed:
    """An ``EventFeed`` over one SQS queue (see the module docstring)."""

    def __init__(
        self,
        uri: str,
        target: AwsTarget,
        *,
        on_event: Callable[[VmEvent], None],
        on_close: Callable[[str], None],
        wait: int = WAIT,
    ) -> None:
        self.uri = uri
        self.target = target
        self.on_event = on_event
        self.on_close = on_close
        self.wait = wait
        self._loop: asyncio.AbstractEventLoop | None = None
        self._conn: Any = None
        self._sqs: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failed = False

    @property
    def connector(self) -> Connector | None:
        return self._conn  # type: ignore[no-any-return]

    @property
    def host(self) -> str | None:
        return None if self._conn is None else str(self._conn.host)

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def open(self) -> Connector:
        """Connect to EC2 and the queue (blocking); messages are read on a thread."""
        from vmwarden.connectors.aws.connection import AwsConnector

        if self._loop is None:
            raise VmwardenError("SqsFeed.attach(loop) must be called before open()")
        conn = AwsConnector(self.uri)
        try:
            sqs = open_client(self.target, "sqs")
            url = conn._call(lambda: sqs.get_queue_url(QueueName=self.target.sqs)["QueueUrl"])
        except Exception:
            conn.close()
            raise
        self._conn, self._sqs, self._failed = conn, sqs, False
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(conn, sqs, str(url), self._stop), name=f"sqs {self.uri}",
            daemon=True,
        )  # fmt: skip
        self._thread.start()
        return conn  # type: ignore[no-any-return]

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._failed

    def close(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=self.wait + 30)
        conn, self._conn = self._conn, None
        sqs, self._sqs = self._sqs, None
        if sqs is not None:
            sqs.close()
        if conn is not None:
            conn.close()

    def _run(self, conn: Any, sqs: Any, url: str, stop: threading.Event) -> None:
        loop = self._loop
        assert loop is not None
        while not stop.is_set():
            try:
                got = conn._call(
                    lambda: sqs.receive_message(
                        QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=self.wait
                    )
                )
                messages = got.get("Messages") or []
                for event in self._events(conn, messages):
                    loop.call_soon_threadsafe(self.on_event, event)
                if messages:
                    entries = [
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                        for i, m in enumerate(messages)
                    ]
                    conn._call(lambda e=entries: sqs.delete_message_batch(QueueUrl=url, Entries=e))
            except Exception as exc:  # any failure of a read: the feed counts as lost
                if not stop.is_set():
                    self._failed = True
                    why = exc if isinstance(exc, VmwardenError) else f"{type(exc).__name__}: {exc}"
                    loop.call_soon_threadsafe(self.on_close, f"SQS read failed: {why}")
                return

    def _events(self, conn: Any, messages: list[dict[str, Any]]) -> list[VmEvent]:
        out = []
        for message in messages:
            found = state_change(str(message.get("Body") or ""), self.target.region)
            if found is None:
                log.info("%s: dropped an SQS message that is no EC2 state change", self.uri)
                continue
            iid, state = found
            name, host = iid, ""
            try:
                inst = conn._instance(iid)
            except DomainGoneError:
                pass  # terminated: the event still says so
            else:
                tags = {t.get("Key"): t.get("Value") for t in inst.get("Tags") or ()}
                name = str(tags.get("Name") or iid)
                host = str((inst.get("Placement") or {}).get("HostId") or "")
            out.append(VmEvent(self.uri, iid, name, _KINDS[state], f"sqs: {state}", host=host))
        return out

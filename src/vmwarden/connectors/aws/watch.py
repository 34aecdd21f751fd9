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

import json
import logging
import re
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from vmwarden.connectors.aws.uri import AwsTarget, open_client, parse_aws_uri
from vmwarden.connectors.base import NoEventFeedError, register_event_feed
from vmwarden.connectors.feed_thread import ThreadedFeed
from vmwarden.errors import DomainGoneError
from vmwarden.model import events as ev
from vmwarden.model.events import VmEvent

if TYPE_CHECKING:
    from vmwarden.connectors.aws.connection import AwsConnector

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


class SqsFeed(ThreadedFeed["AwsConnector"]):
    """An ``EventFeed`` over one SQS queue (see the module docstring)."""

    thread_name = "sqs"
    failure = "SQS read failed"

    def __init__(
        self,
        uri: str,
        target: AwsTarget,
        *,
        on_event: Callable[[VmEvent], None],
        on_close: Callable[[str], None],
        wait: int = WAIT,
    ) -> None:
        super().__init__(uri, on_event=on_event, on_close=on_close, join_timeout=wait + 30)
        self.target = target
        self.wait = wait
        self._sqs: Any = None

    def _connect(self) -> AwsConnector:
        from vmwarden.connectors.aws.connection import AwsConnector

        return AwsConnector(self.uri)

    def _subscribe(self, conn: AwsConnector, stop: threading.Event) -> Iterator[VmEvent]:
        """The queue's client and URL (blocking, in ``open``); messages are read on the thread."""
        sqs = open_client(self.target, "sqs")
        url = conn._call(lambda: sqs.get_queue_url(QueueName=self.target.sqs)["QueueUrl"])
        self._sqs = sqs
        return self._read(conn, sqs, str(url), stop)

    def _release(self) -> None:
        sqs, self._sqs = self._sqs, None
        if sqs is not None:
            sqs.close()

    def _read(self, conn: Any, sqs: Any, url: str, stop: threading.Event) -> Iterator[VmEvent]:
        while not stop.is_set():
            got = conn._call(
                lambda: sqs.receive_message(
                    QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=self.wait
                )
            )
            messages = got.get("Messages") or []
            yield from self._events(conn, messages)  # each handed to the loop before the delete
            if messages:
                entries = [
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, m in enumerate(messages)
                ]
                conn._call(lambda e=entries: sqs.delete_message_batch(QueueUrl=url, Entries=e))

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

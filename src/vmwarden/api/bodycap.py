"""``BodyCap``: request bodies above a size are refused 413 before anything reads them.

Why a pure ASGI middleware, outside every route: FastAPI reads (and JSON-parses) a route's
whole body *before* its dependencies run, authentication included, so without a cap an
anonymous client could make the server hold and parse hundreds of MiB only to be told 401
(one such POST took the watch daemon to ~2 GiB and stalled it for 10 s). Here a declared
``Content-Length`` above the cap is answered at once without reading a byte of the body, and
a streamed (chunked) body is counted as it arrives: past the cap the client gets 413, the
application sees the client gone and whatever it answers after that is dropped.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

DEFAULT_MAX_BODY = 1024 * 1024  # 1 MiB: the API's largest legitimate body is a few KiB


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers") or ():
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the HTTP server refuses a malformed length itself
    return None


class BodyCap:
    """Refuse request bodies larger than ``max_body`` bytes with 413 (see module docstring)."""

    def __init__(self, app: ASGIApp, max_body: int = DEFAULT_MAX_BODY) -> None:
        if max_body < 1:
            raise ValueError("max_body must be at least 1 byte")
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _declared_length(scope)
        if declared is not None and declared > self.max_body:
            await self._refuse(send)
            return
        received = 0
        over = False  # the body went past the cap: the client has its 413
        started = False  # the application began its own response

        async def capped_receive() -> Message:
            nonlocal received, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    over = True
                    if not started:
                        await self._refuse(send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if over:
                return  # our 413 is the answer
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, capped_receive, guarded_send)
        except Exception:
            if not over:
                raise
            # the application failed on the body we cut short: expected, already answered

    async def _refuse(self, send: Send) -> None:
        limit = _human(self.max_body)
        body = (
            '{"title":"Payload Too Large","status":413,'
            f'"detail":"request body larger than {limit}"}}'
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/problem+json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _human(size: int) -> str:
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size} bytes"

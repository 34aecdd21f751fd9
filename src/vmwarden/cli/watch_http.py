"""``watch --listen``: the API and dashboard served beside the daemon, on a thread of their own.

Why a thread (and event loop) of its own: the daemon's loop carries libvirt's events (a
starting VM is quarantined from there) and the admission service has its own thread too, so
no HTTP client -- a slow one, a flood, a huge body -- can delay either. Bodies are capped
before authentication (``--max-body``, ``api.bodycap``), so a request cannot take the
process's memory either.

The daemon's ``/metrics`` (Prometheus text) and ``/state`` (JSON) join the API's routes and
need a valid token (any role) from every client, loopback included: a reverse proxy that
adds no ``X-Forwarded-For`` makes every client look local, and the estate's shape is not for
anonymous eyes.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import PlainTextResponse, Response

from vmwarden.api.app import create_app
from vmwarden.api.auth import authenticate_token, user_from_request
from vmwarden.api.settings import Settings
from vmwarden.engine.metrics import CONTENT_TYPE
from vmwarden.engine.watch import Watcher

log = logging.getLogger(__name__)


def watch_app(
    watcher: Watcher,
    store: Any,
    *,
    db: str | None,
    policy: Path,
    uris: list[str],
    **settings: Any,
) -> FastAPI:
    """The API app plus /metrics and /state; ``settings``: more ``Settings`` fields (sign-in
    limits, ``max_body``)."""
    app = create_app(
        Settings(db_url=db, policy_path=policy, uris=tuple(uris), **settings), store=store
    )

    def allowed(request: Request) -> None:
        if user_from_request(request, store) is None:
            raise HTTPException(status_code=401, headers={"WWW-Authenticate": "Bearer"})

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        await asyncio.to_thread(allowed, request)
        body = await asyncio.to_thread(watcher.metrics.render)
        return PlainTextResponse(body, media_type=CONTENT_TYPE)

    @app.get("/state", include_in_schema=False)
    async def state(request: Request) -> Response:
        await asyncio.to_thread(allowed, request)
        body = await asyncio.to_thread(watcher.describe)
        return Response(body, media_type="application/json")

    return app


def token_checker(store: Any) -> Any:
    """``authorize(token)`` for ``--metrics-listen``: an enabled user's token, any role."""

    def authorize(token: str) -> bool:
        return authenticate_token(store, token) is not None

    return authorize


class HttpThread:
    """uvicorn serving ``app`` on an already bound ``sock``, in a thread with its own loop.

    ``on_exit`` is called when the server ends for any reason (the daemon stops with it).
    """

    def __init__(self, app: FastAPI, sock: socket.socket, on_exit: Any) -> None:
        import uvicorn

        self.server = uvicorn.Server(
            uvicorn.Config(
                app,
                log_level="warning",
                server_header=False,
                proxy_headers=False,  # X-Forwarded-For is the app's to judge (trust_proxy)
            )
        )
        self.sock = sock
        self.on_exit = on_exit
        self.thread = threading.Thread(target=self._serve, name="vmwarden-http", daemon=True)

    def start(self) -> HttpThread:
        self.thread.start()
        return self

    def _serve(self) -> None:
        try:
            self.server.run(sockets=[self.sock])
        except BaseException as exc:  # uvicorn ends a failed start with SystemExit
            log.error("the HTTP server stopped: %s", exc or type(exc).__name__)
        finally:
            self.on_exit()

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)

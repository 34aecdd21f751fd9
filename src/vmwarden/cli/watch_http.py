"""``watch --listen``: the API and dashboard served beside the daemon, in its event loop.

The daemon's ``/metrics`` (Prometheus text) and ``/state`` (JSON) join the API's routes. They
answer loopback clients without a token (a local Prometheus, the operator's curl) and anyone
else only with a valid token: the estate's shape is not for anonymous eyes. A request that
carries ``X-Forwarded-For`` or ``Forwarded`` came through a proxy, so it is not taken for a
loopback client even when the proxy itself connects over loopback.
"""

from __future__ import annotations

import asyncio
import ipaddress
import signal
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import PlainTextResponse, Response

from vmwarden.api.app import create_app
from vmwarden.api.auth import user_from_request
from vmwarden.api.settings import Settings
from vmwarden.engine.metrics import CONTENT_TYPE
from vmwarden.engine.watch import Watcher


def _loopback(request: Request) -> bool:
    if "x-forwarded-for" in request.headers or "forwarded" in request.headers:
        return False
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def watch_app(
    watcher: Watcher,
    store: Any,
    *,
    db: str | None,
    policy: Path,
    uris: list[str],
    **sign_in: Any,
) -> FastAPI:
    """The API app plus /metrics and /state; ``sign_in``: ``Settings``' sign-in limits."""
    settings = Settings(db_url=db, policy_path=policy, uris=tuple(uris), **sign_in)
    app = create_app(settings, store=store)

    def allowed(request: Request) -> None:
        if not _loopback(request) and user_from_request(request, store) is None:
            raise HTTPException(status_code=401, headers={"WWW-Authenticate": "Bearer"})

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        allowed(request)
        body = await asyncio.to_thread(watcher.metrics.render)
        return PlainTextResponse(body, media_type=CONTENT_TYPE)

    @app.get("/state", include_in_schema=False)
    async def state(request: Request) -> Response:
        allowed(request)
        body = await asyncio.to_thread(watcher.describe)
        return Response(body, media_type="application/json")

    return app


async def run_with_http(watcher: Watcher, app: FastAPI, host: str, port: int) -> None:
    """Run the daemon and the HTTP server together; either ending (or a signal) stops both."""
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            server_header=False,
            proxy_headers=False,  # X-Forwarded-For is the app's to judge (trust_proxy)
        )
    )
    loop = asyncio.get_running_loop()

    def stop() -> None:
        watcher.stop()
        server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    http = asyncio.create_task(server.serve())
    http.add_done_callback(lambda _t: watcher.stop())
    try:
        await watcher.run()
    finally:
        server.should_exit = True
        await http

"""``watch --listen``: the API and dashboard served beside the daemon, in its event loop.

The daemon's ``/metrics`` (Prometheus text) and ``/state`` (JSON) join the API's routes. They
answer loopback clients without a token (a local Prometheus, the operator's curl) and anyone
else only with a valid token: the estate's shape is not for anonymous eyes.
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
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def watch_app(
    watcher: Watcher, store: Any, *, db: str | None, policy: Path, uris: list[str]
) -> FastAPI:
    app = create_app(Settings(db_url=db, policy_path=policy, uris=tuple(uris)), store=store)

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
        uvicorn.Config(app, host=host, port=port, log_level="warning", server_header=False)
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

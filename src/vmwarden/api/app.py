"""``create_app(settings)``: the REST API under ``/api``, and the dashboard when present.

Example::

    app = create_app(Settings(db_url="sqlite:////var/lib/vmwarden/vmwarden.db",
                              policy_path=Path("policy.yaml"), uris=("qemu:///system",)))
    uvicorn.run(app, host="127.0.0.1", port=8080)
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from starlette.middleware.sessions import SessionMiddleware
from starlette.routing import Mount

from vmwarden.api import problems
from vmwarden.api.auth import SESSION_COOKIE
from vmwarden.api.bodycap import BodyCap
from vmwarden.api.routes import ROUTERS
from vmwarden.api.settings import Settings
from vmwarden.api.state import AppState
from vmwarden.errors import VmwardenError
from vmwarden.store import Store


def _web_router(settings: Settings) -> APIRouter | None:
    """``vmwarden.web.build_router(settings)`` if the dashboard is installed (and wanted)."""
    if settings.web is False:
        return None
    build = None
    if importlib.util.find_spec("vmwarden.web") is not None:
        build = getattr(importlib.import_module("vmwarden.web"), "build_router", None)
    if build is None:
        if settings.web:
            raise VmwardenError(
                "the dashboard (vmwarden.web.build_router) is not available",
                hint="serve the API alone (no --web) or install vmwarden with its dashboard",
            )
        return None
    return build(settings)


def create_app(settings: Settings, *, store: Store | None = None) -> FastAPI:
    """Build the app. ``store``: an already open store to use (the caller keeps owning it);
    otherwise the app opens ``settings.db_url`` on first use and closes it at shutdown."""
    state = AppState(settings, store)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            state.close()

    app = FastAPI(
        title="vmwarden",
        summary="Find every VM and disk image, judge them against a policy, quarantine and "
        "release. Authenticate with 'Authorization: Bearer <token>' (vmwarden user add).",
        openapi_url=None,  # served by routes.docs, to signed-in users only
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
        lifespan=lifespan,
    )
    app.state.vmwarden = state
    app.add_middleware(
        SessionMiddleware,
        secret_key=settings.session_secret,
        session_cookie=SESSION_COOKIE,
        max_age=int(settings.session_max_age.total_seconds()),  # the row decides sooner
        same_site="lax",
        https_only=settings.secure_cookies,
    )

    @app.middleware("http")
    async def _no_store(request: Any, call_next: Any) -> Any:
        response = await call_next(request)
        if request.url.path.startswith("/api"):
            response.headers.setdefault("Cache-Control", "no-store")
            response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    # Added last, so outermost of ours: a body over the cap is refused before any session,
    # authentication or route reads it.
    app.add_middleware(BodyCap, max_body=settings.max_body)
    problems.install(app)
    api = APIRouter(prefix="/api")
    for router in ROUTERS:
        api.include_router(router)
    app.include_router(api)
    web = _web_router(settings)
    if web is not None:
        app.include_router(web)
        # include_router copies routes, not mounts (e.g. the dashboard's static files)
        app.router.routes.extend(r for r in web.routes if isinstance(r, Mount))
    return app

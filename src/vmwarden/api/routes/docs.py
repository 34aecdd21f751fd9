"""The OpenAPI document and its browsable page, for signed-in users only.

Only ``/api/health`` is anonymous; the schema says nothing secret, but it is no one else's
business either. Swagger UI fetches the schema with the browser's session cookie.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse

from vmwarden.api.auth import CurrentUser

router = APIRouter(tags=["docs"])


@router.get("/openapi.json", include_in_schema=False)
def openapi(request: Request, _user: CurrentUser) -> dict[str, Any]:
    return request.app.openapi()


@router.get("/docs", include_in_schema=False)
def docs(_user: CurrentUser) -> HTMLResponse:
    return get_swagger_ui_html(openapi_url="/api/openapi.json", title="vmwarden API")

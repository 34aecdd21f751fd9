"""The OpenAPI document and its browsable page, for signed-in users only.

Only ``/api/health`` is anonymous; the schema says nothing secret, but it is no one else's
business either. The page is Swagger UI served **from the installed package**
(``swagger-ui-bundle-v2``, a pinned copy of swagger-ui's dist), never from a CDN: a script
from another origin would run on vmwarden's origin with the user's session, with no
integrity check, and an offline install could not load it at all. The page's own
Content-Security-Policy allows scripts, styles, images and requests from this origin only,
so nothing added later can quietly reach out either. Without the package the page answers
404 with why, and the JSON document is still served.

Swagger UI sends the session cookie; for "Try it out" writes it adds the session's CSRF
token (from the page's ``<meta>``) as the ``X-CSRF-Token`` header, as any dashboard fetch does.
"""

from __future__ import annotations

import html
from importlib import import_module
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse, Response

from vmwarden.api.auth import CSRF_HEADER, SESSION_SID, CurrentUser, csrf_token

router = APIRouter(tags=["docs"])

ASSETS = "/api/docs/assets"
# The files the page uses, and their media types; nothing else of the package is served.
_VENDOR = {
    "swagger-ui.css": "text/css; charset=utf-8",
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
_INIT = "vmwarden-docs.js"
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
_CACHE = "private, max-age=86400"

# validatorUrl null: by default Swagger UI shows a badge fetched from validator.swagger.io.
# No StandaloneLayout: its top bar would load any URL typed into it.
_INIT_JS = """\
"use strict";
window.addEventListener("load", function () {
  var meta = document.querySelector('meta[name="csrf-token"]');
  var csrf = meta ? meta.getAttribute("content") : "";
  window.ui = SwaggerUIBundle({
    url: "/api/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: false,
    validatorUrl: null,
    queryConfigEnabled: false,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    requestInterceptor: function (req) {
      if (csrf && req.method && req.method.toUpperCase() !== "GET") {
        req.headers["CSRF_HEADER"] = csrf;
      }
      return req;
    }
  });
});
""".replace("CSRF_HEADER", CSRF_HEADER)

_PAGE = """\
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>vmwarden API</title>
<meta name="csrf-token" content="{csrf}">
<link rel="stylesheet" href="{assets}/swagger-ui.css">
<link rel="icon" type="image/png" href="{assets}/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script src="{assets}/{init}"></script>
</body>
</html>
"""


def vendor_dir() -> Path | None:
    """Where the packaged Swagger UI files are, or None when the package is missing."""
    try:
        found = Path(str(import_module("swagger_ui_bundle").swagger_ui_path))
    except (ImportError, AttributeError):
        return None
    return found if all((found / name).is_file() for name in _VENDOR) else None


def _missing() -> HTTPException:
    return HTTPException(
        404,
        detail="the API docs page needs the swagger-ui-bundle-v2 package (not installed); "
        "the OpenAPI document is at /api/openapi.json",
    )


@router.get("/openapi.json", include_in_schema=False)
def openapi(request: Request, _user: CurrentUser) -> dict[str, Any]:
    return request.app.openapi()


@router.get("/docs", include_in_schema=False)
def docs(request: Request, _user: CurrentUser) -> HTMLResponse:
    if vendor_dir() is None:
        raise _missing()
    signed_in = "session" in request.scope and SESSION_SID in request.session
    csrf = csrf_token(request) if signed_in else ""  # a bearer caller gets no cookie
    page = _PAGE.format(csrf=html.escape(csrf, quote=True), assets=ASSETS, init=_INIT)
    return HTMLResponse(page, headers={"Content-Security-Policy": _CSP})


@router.get("/docs/assets/{name}", include_in_schema=False)
def asset(name: Annotated[str, PathParam(max_length=64)], _user: CurrentUser) -> Response:
    """One of the page's files, by name from a fixed list (no path reaches the disk)."""
    headers = {"Cache-Control": _CACHE}
    if name == _INIT:
        return Response(_INIT_JS, media_type="text/javascript; charset=utf-8", headers=headers)
    media_type = _VENDOR.get(name)
    if media_type is None:
        raise HTTPException(404, detail=f"no docs asset {name!r}")
    root = vendor_dir()
    if root is None:
        raise _missing()
    return FileResponse(root / name, media_type=media_type, headers=headers)

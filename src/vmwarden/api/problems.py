"""Errors as RFC 9457 problem details (``application/problem+json``) under ``/api``.

Every error a route can meet maps to one status here, once: bad input 422, unknown thing
404, a state that forbids the change 409, a hypervisor that failed 502. Pages outside
``/api`` (the dashboard) keep FastAPI's default error handling for HTTP errors.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import (
    http_exception_handler,
    request_validation_exception_handler,
)
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from vmwarden.api.jobs import ScanBusyError
from vmwarden.errors import (
    ConnectorError,
    DomainGoneError,
    EnforceError,
    InspectError,
    PolicyError,
    VmwardenError,
)
from vmwarden.store.exceptions import DecidedError, SameActorError

if TYPE_CHECKING:
    from fastapi import FastAPI, Request
    from starlette.responses import Response

MEDIA_TYPE = "application/problem+json"

# Most specific first.
_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (SameActorError, 403),
    (DecidedError, 409),
    (DomainGoneError, 404),
    (ConnectorError, 502),
    (EnforceError, 409),
    (PolicyError, 409),
    (InspectError, 422),
    (ScanBusyError, 409),
)


def problem(
    status: int,
    detail: str | None = None,
    *,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
    }
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(jsonable_encoder(body), status, headers=headers, media_type=MEDIA_TYPE)


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api")


def status_of(exc: Exception) -> int:
    for kind, code in _STATUS:
        if isinstance(exc, kind):
            return code
    return 500


async def _http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if not _is_api(request):
        return await http_exception_handler(request, exc)
    detail = exc.detail if isinstance(exc.detail, str) else None
    return problem(exc.status_code, detail, instance=request.url.path, headers=exc.headers)


async def _validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    if not _is_api(request):
        return await request_validation_exception_handler(request, exc)
    errors = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()
    ]
    first = errors[0] if errors else None
    detail = f"{'.'.join(map(str, first['loc']))}: {first['msg']}" if first else "invalid input"
    return problem(422, detail, instance=request.url.path, errors=errors)


async def _vmwarden(request: Request, exc: Exception) -> Response:
    code = status_of(exc)
    hint = getattr(exc, "hint", None)
    extra: dict[str, Any] = {"hint": hint}
    if isinstance(exc, ScanBusyError):
        extra["running_job"] = exc.running
    return problem(code, str(exc), instance=request.url.path, **extra)


def install(app: FastAPI) -> None:
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(VmwardenError, _vmwarden)
    app.add_exception_handler(ScanBusyError, _vmwarden)

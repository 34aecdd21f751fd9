"""``GET /api/health``: the only route open to anyone (load balancers, monitoring).

200 with ``status: ok`` when the store answers; **503** with the same body shape and
``status: degraded`` when it does not, so a load balancer that reads only the status code
takes the instance out of rotation.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from vmwarden.api.deps import StateDep
from vmwarden.api.schemas import Health
from vmwarden.errors import StoreError

router = APIRouter(tags=["health"])


def _version() -> str:
    try:
        return version("vmwarden")
    except PackageNotFoundError:
        return "unknown"


@router.get(
    "/health",
    response_model=Health,
    summary="Liveness and store reachability (503 when the store is unreachable)",
    responses={503: {"model": Health, "description": "The store is unreachable"}},
)
def health(state: StateDep) -> Health | JSONResponse:
    try:
        state.store.recent_scans(limit=1)  # opening the store may fail too
    except StoreError:
        body = Health(status="degraded", store="unreachable", version=_version())
        return JSONResponse(body.model_dump(), status_code=503)
    return Health(status="ok", store="ok", version=_version())

"""``GET /api/health``: the only route open to anyone (load balancers, monitoring)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from fastapi import APIRouter

from vmwarden.api.deps import StateDep
from vmwarden.api.schemas import Health
from vmwarden.errors import StoreError

router = APIRouter(tags=["health"])


def _version() -> str:
    try:
        return version("vmwarden")
    except PackageNotFoundError:
        return "unknown"


@router.get("/health", response_model=Health, summary="Liveness and store reachability")
def health(state: StateDep) -> Health:
    try:
        state.store.recent_scans(limit=1)
    except StoreError:
        return Health(status="degraded", store="unreachable", version=_version())
    return Health(status="ok", store="ok", version=_version())

"""Sweeps: trigger one (admin) and follow it; the store's record of past sweeps."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query

from vmwarden.api.auth import AdminUser, CurrentUser
from vmwarden.api.deps import StateDep, StoreDep
from vmwarden.api.jobs import ScanJob
from vmwarden.api.schemas import ScanIn, ScanJobOut, ScanOut
from vmwarden.errors import PolicyError
from vmwarden.store.audit import record_event

router = APIRouter(prefix="/scans", tags=["scans"])
JobId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")]


def _out(job: ScanJob) -> ScanJobOut:
    return ScanJobOut(
        id=job.id,
        status=job.status,  # type: ignore[arg-type]
        requested_by=job.requested_by,
        requested_at=job.requested_at,
        uris=job.uris,
        enforce=job.enforce,
        started_at=job.started_at,
        finished_at=job.finished_at,
        summary=job.summary,
        warnings=job.warnings,
        error=job.error,
    )


@router.post("", response_model=ScanJobOut, status_code=202, summary="Start a sweep (admin)")
def trigger_scan(body: ScanIn, state: StateDep, user: AdminUser) -> ScanJobOut:
    """Sweep the server's connection URIs with its policy, in the background; 409 while
    another sweep runs. ``enforce`` also carries out the rules' actions."""
    settings = state.settings
    if settings.policy_path is None:
        raise PolicyError("this server has no policy", hint="start it with -p POLICY")
    if not settings.uris:
        raise HTTPException(409, detail="this server has no connection URIs; start it with -c URI")
    job = state.jobs.start(
        state.store,
        str(settings.policy_path),
        list(settings.uris),
        actor=user.name,
        enforce=body.enforce,
        images_dirs=settings.scan_images,
    )
    record_event(
        state.store,
        "scan-request",
        user.name,
        body.reason or None,
        {"job": job.id, "uris": list(settings.uris), "enforce": body.enforce},
    )
    return _out(job)


@router.get("/jobs", response_model=list[ScanJobOut], summary="Sweeps started by this server")
def list_jobs(state: StateDep, _user: CurrentUser) -> list[ScanJobOut]:
    return [_out(j) for j in state.jobs.recent()]


@router.get("/jobs/{job_id}", response_model=ScanJobOut, summary="One sweep job")
def get_job(job_id: JobId, state: StateDep, _user: CurrentUser) -> ScanJobOut:
    job = state.jobs.get(job_id)
    if job is None:
        raise HTTPException(404, detail=f"no scan job {job_id}")
    return _out(job)


@router.get("", response_model=list[ScanOut], summary="Recent sweeps (from the store)")
def recent_scans(
    store: StoreDep,
    _user: CurrentUser,
    limit: Annotated[int, Query(ge=1, le=500)] = 20,
) -> list[ScanOut]:
    return [ScanOut(**s) for s in store.recent_scans(limit=limit)]

"""One router module per noun; :data:`ROUTERS` is what ``create_app`` mounts under ``/api``."""

from __future__ import annotations

from vmwarden.api.routes import (
    actions,
    audit,
    docs,
    exceptions,
    findings,
    health,
    history,
    images,
    scans,
    sessions,
    templates,
    users,
    vms,
)

ROUTERS = (
    health.router,
    docs.router,
    vms.router,
    images.router,
    templates.router,
    findings.router,
    exceptions.router,
    actions.router,
    history.router,
    audit.router,
    scans.router,
    users.router,
    sessions.router,
)

"""Contexts of the pages where people review and decide: findings, exceptions, templates.

Each reads what its page needs from the store once; who may act on it is the template's
question (``can(...)``) and, again, the form handler's (:mod:`vmwarden.web.forms`).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from vmwarden.api.routes.common import server_policy
from vmwarden.api.routes.exceptions import MAX_DURATION
from vmwarden.errors import VmwardenError
from vmwarden.store.exceptions import EXPIRED, ExceptionsRepo
from vmwarden.store.pages import FindingQuery, Pages
from vmwarden.web import estate
from vmwarden.web.actions import policy_rules

FINDINGS_CAP = 5000  # open findings read at once; the filters narrow the rest
EXCEPTIONS_PAGE = 100
EXCEPTION_STATUSES = ("requested", "approved", "rejected", EXPIRED)
VM_CHOICES_CAP = 2000  # VM names offered as suggestions in the request form


def _rank(f: dict[str, Any]) -> tuple[int, str, str, str]:
    sev = estate.SEVERITIES.index(f["severity"]) if f["severity"] in estate.SEVERITIES else 9
    return (sev, f["rule"], f["host"], f["name"])


def findings_page(store: Any, *, severity: str, rule: str, ack: str) -> dict[str, Any]:
    """Open findings, worst first, each with the acknowledgement in force (if any)."""
    acknowledged = {"yes": True, "no": False}.get(ack)
    query = FindingQuery(status="open", rule=rule or None, acknowledged=acknowledged)
    rows, total = Pages(store).findings(query, limit=FINDINGS_CAP, offset=0)
    if severity:
        rows = [f for f in rows if f["severity"] == severity]
    rows.sort(key=_rank)
    return {
        "findings": rows,
        "total": total,
        "cap": FINDINGS_CAP,
        "severity": severity,
        "rule": rule,
        "ack": ack if acknowledged is not None else "",
        "severities": estate.SEVERITIES,
    }


def vm_findings(store: Any, vm_id: str) -> list[dict[str, Any]]:
    """One VM's findings, open first then worst first, with acknowledgements."""
    rows, _ = Pages(store).findings(
        FindingQuery(resource="vm", resource_id=vm_id), limit=500, offset=0
    )
    rows.sort(key=lambda f: (f["status"] != "open", *_rank(f)))
    return rows


def vm_exceptions(store: Any, vm_id: str) -> list[dict[str, Any]]:
    items, _ = ExceptionsRepo(store).list_exceptions(vm_id=vm_id, limit=50)
    return items


def exceptions_page(
    store: Any, settings: Any, *, status: str, page_no: int, vm: str, rule: str
) -> dict[str, Any]:
    """Exceptions newest first (one status, or all), counts per status, the request form."""
    repo = ExceptionsRepo(store)
    status = status if status in EXCEPTION_STATUSES else ""
    offset = (page_no - 1) * EXCEPTIONS_PAGE
    items, total = repo.list_exceptions(status=status or None, limit=EXCEPTIONS_PAGE, offset=offset)
    counts = {s: repo.list_exceptions(status=s, limit=1)[1] for s in EXCEPTION_STATUSES}
    vms = store.list_vms()
    base = {"status": status} if status else {}
    return {
        "exceptions": items,
        "total": total,
        "shown": status,  # not "status": page() takes that as the HTTP status
        "statuses": EXCEPTION_STATUSES,
        "counts": counts,
        "page_no": page_no,
        "pages": max(1, -(-total // EXCEPTIONS_PAGE)),
        "query": lambda n: "?" + urlencode({**base, "page": n}),
        "rules": policy_rules(settings),
        "vm_names": sorted({str(v["name"]) for v in vms})[:VM_CHOICES_CAP],
        "prefill": {"vm": vm, "rule": rule},
        # the API allows 366 days from now; the last whole day inside that, in UTC
        "max_until": (datetime.now(UTC) + MAX_DURATION - timedelta(days=1)).date().isoformat(),
    }


def _inside(path: str, roots: list[Path]) -> bool:
    return any(Path(path).is_relative_to(root) for root in roots)


def policy_templates(settings: Any) -> list[dict[str, Any]]:
    """Templates the policy file approves (a sweep's catalog is the store's plus these)."""
    if settings.policy_path is None:
        return []
    try:
        declared = server_policy(settings.policy_path).templates
    except VmwardenError:
        return []
    return [
        {"name": t.name, "digest": t.digest or t.aws_image, "source": "policy"} for t in declared
    ]


def templates_page(store: Any, settings: Any) -> dict[str, Any]:
    """The approved catalog (the store's, then the policy file's), and for the approve form
    the images inside the image dirs that are not approved yet."""
    roots = [Path(os.path.realpath(d)) for d in settings.image_dirs]
    catalog = [{**t, "source": "store"} for t in store.templates()]
    catalog += policy_templates(settings)
    approved = {t["digest"] for t in catalog}
    candidates = sorted(
        {
            img["path"]
            for img in store.list_images()
            if img.get("path") and img.get("digest") not in approved and _inside(img["path"], roots)
        }
    )
    in_use: dict[str, int] = {}
    for vm in store.list_vms():
        name = (vm.get("meta") or {}).get("template")
        if name:
            in_use[name] = in_use.get(name, 0) + 1
    return {
        "templates": catalog,
        "policy_path": settings.policy_path,
        "image_dirs": [str(r) for r in roots],
        "candidates": candidates[:VM_CHOICES_CAP],
        "in_use": in_use,
    }

"""What the store knows about a VM beyond its inventory record, for the API and the dashboard.

:func:`guest_of` (``store.guest``, shared with ``vmwarden report vms``): the VM's stored
guest facts, which a swept VM's record does not carry.

:func:`cloned_from` names the approved template a disk was cloned from, by its root's digest:
a VM whose metadata names no template is still a clone of ``debian12-base`` when its backing
file is that image; or, for a full clone, by the content comparison a sweep cached (#12.4).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from vmwarden.api.routes.common import server_policy
from vmwarden.engine.content_lineage import stored_matches
from vmwarden.errors import VmwardenError
from vmwarden.model.lineage import ContentMatch
from vmwarden.policy.filters.template import DEFAULT_THRESHOLD, NotApprovedTemplate
from vmwarden.store.guest import guest_of

__all__ = ["approved_catalog", "cloned_from", "guest_of", "lineage_threshold", "template_clones"]


def lineage_threshold(settings: Any) -> float:
    """The strictest ``not-approved-template`` threshold of the server's policy (the default
    without one): a full clone is named as derived only where every rule agrees."""
    if settings is None or getattr(settings, "policy_path", None) is None:
        return DEFAULT_THRESHOLD
    try:
        policy = server_policy(settings.policy_path)
    except VmwardenError:
        return DEFAULT_THRESHOLD
    found = [
        f.params.threshold
        for rule in policy.rules
        for f in _filters(rule.filter)
        if isinstance(f, NotApprovedTemplate)
    ]
    return max(found, default=DEFAULT_THRESHOLD)


def _filters(f: Any) -> Iterator[Any]:
    yield f
    for child in getattr(f, "children", None) or ():
        yield from _filters(child)


def approved_catalog(store: Any, settings: Any) -> dict[str, str]:
    """Approved digest → template name: the store's catalog, then the policy file's (as a
    sweep merges them). A policy that no longer loads adds nothing."""
    catalog = dict(store.catalog())
    if settings is not None and getattr(settings, "policy_path", None) is not None:
        with contextlib.suppress(VmwardenError):
            catalog = {**catalog, **server_policy(settings.policy_path).catalog()}
    return catalog


def template_clones(store: Any, record: dict[str, Any], settings: Any) -> list[dict[str, Any]]:
    """:func:`cloned_from` with what the store and the server's policy know: the merged
    catalog, the content comparisons sweeps cached, the policy's threshold."""
    content = stored_matches(store, record)
    return cloned_from(
        record, approved_catalog(store, settings), content, lineage_threshold(settings)
    )


def cloned_from(
    record: dict[str, Any],
    catalog: dict[str, str],
    content: dict[str, ContentMatch] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
) -> list[dict[str, Any]]:
    """Each disk whose backing root is an approved template: disk, template, path, digest;
    and each full clone whose content a sweep found close enough to a template's
    (``content``: ``engine.content_lineage.stored_matches``), with its ``similarity``."""
    out = []
    for disk in record.get("disks") or []:
        chain = disk.get("chain") or []
        root = chain[-1] if chain else {}
        name = catalog.get(str(root.get("digest")))
        if len(chain) >= 2 and name is not None:
            out.append(
                {
                    "disk": disk.get("target"),
                    "template": name,
                    "path": root.get("path"),
                    "digest": root.get("digest"),
                }
            )
            continue
        # no backing file: a full clone when a sweep found its content close enough
        match = (content or {}).get(str(disk.get("target")))
        if chain and match is not None and (match.similarity or 0) >= threshold:
            out.append(
                {
                    "disk": disk.get("target"),
                    "template": match.template,
                    "path": chain[0].get("path"),
                    "digest": root.get("digest"),
                    "similarity": round(match.similarity or 0, 3),
                }
            )
    return out

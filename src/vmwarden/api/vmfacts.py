"""What the store knows about a VM beyond its inventory record, for the API and the dashboard.

A sweep records the inventory *before* it inspects the disks, so a swept VM's record has no
``guest``: the facts live in the guest-facts cache, keyed by the disk's path. A VM page that
said "Not inspected" above findings naming telnetd read only the record. :func:`guest_of`
reads the record's facts (watch keeps them there) or else the cached facts of the VM's own
disks, as the sweep chose them: the first disk holding an OS speaks for the VM, and only facts
read through the same backing chain the record shows (the same file, not another host's file
at the same path). A running VM's guest-agent answer is laid over them, as the sweep does.

:func:`cloned_from` names the approved template a disk was cloned from, by its root's digest:
a VM whose metadata names no template is still a clone of ``debian12-base`` when its backing
file is that image; or, for a full clone, by the content comparison a sweep cached (#12.4).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from vmwarden.api.routes.common import server_policy
from vmwarden.engine.content_lineage import stored_matches
from vmwarden.errors import VmwardenError
from vmwarden.model.guest import GuestFacts, merge_live
from vmwarden.model.lineage import ContentMatch
from vmwarden.policy.filters.template import DEFAULT_THRESHOLD, NotApprovedTemplate
from vmwarden.store.facts import FactsCache

DISK_DEVICES = ("disk", "lun")  # what inspection reads (engine.lineage.LINEAGE_DEVICES)


def _same_file(path: Any) -> str:
    """A layer's name as one file: the record and the inspection may name it differently
    (a symlink, a relative backing name resolved by each)."""
    return os.path.realpath(str(path))


def _chain_paths(disk: dict[str, Any]) -> list[str]:
    return [_same_file(layer.get("path")) for layer in disk.get("chain") or []]


def _readable_tops(record: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """(top path, chain paths) of each disk inspection would read, in the VM's disk order."""
    out = []
    for disk in record.get("disks") or []:
        chain = disk.get("chain") or []
        if disk.get("device") not in DISK_DEVICES or not chain:
            continue
        top = chain[0]
        if top.get("type") != "file" or not top.get("path"):
            continue
        if top.get("error") or top.get("host"):
            continue  # not read through this record's disk (e.g. another host's file)
        out.append((os.path.abspath(str(top["path"])), _chain_paths(disk)))
    return out


def guest_of(store: Any, record: dict[str, Any]) -> dict[str, Any] | None:
    """The VM's guest facts as a JSON dict, or None when no inspection ever read its disks."""
    if record.get("guest"):
        return dict(record["guest"])
    tops = _readable_tops(record)
    if not tops:
        return None
    stored = FactsCache(store).stored_many(path for path, _ in tops)
    chosen: dict[str, Any] | None = None
    for path, chain in tops:
        facts = stored.get(path)
        if facts is None:
            continue
        layers = (facts.get("identity") or {}).get("layers") or []
        if [_same_file(layer.get("path")) for layer in layers] != chain:
            continue  # read through another chain: not this disk as the record shows it
        if chosen is None or (chosen.get("os_name") is None and facts.get("os_name")):
            chosen = facts  # the first disk that holds an OS speaks for the VM
    if chosen is None:
        return None
    agent = record.get("agent")
    if agent:
        try:
            merged = merge_live(GuestFacts.from_dict(chosen), GuestFacts.from_dict(agent))
        except (TypeError, ValueError):
            return chosen  # an agent answer of another shape: the disk's facts still stand
        return merged.to_dict()
    return chosen


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

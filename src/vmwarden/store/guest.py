"""A VM's stored guest facts, for the API, the dashboard and ``vmwarden report vms``.

A sweep records the inventory *before* it inspects the disks, so a swept VM's record has no
``guest``: the facts live in the guest-facts cache, keyed by the disk's path. A VM page that
said "Not inspected" above findings naming telnetd read only the record. :func:`guest_of`
reads the record's facts (watch keeps them there) or else the cached facts of the VM's own
disks, as the sweep chose them: the first disk holding an OS speaks for the VM, and only facts
read through the same backing chain the record shows (the same file, not another host's file
at the same path). A running VM's guest-agent answer is laid over them, as the sweep does.
"""

from __future__ import annotations

import os
from typing import Any

from vmwarden.model.guest import GuestFacts, merge_live
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

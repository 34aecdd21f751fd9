"""Stored VM records (``VM.to_dict()`` form) back into ``VM`` objects.

Admission judges a starting VM against the other VMs the store knows (cross-VM conditions
such as ``duplicate-mac`` or ``mixed-classification-on-host``) without asking libvirt.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from vmwarden.model import VM, Disk, GuestFacts, Layer, Nic, NicOrigin, State, VmMeta
from vmwarden.model.vm import TemplateRecord


def vm_from_record(record: dict[str, Any]) -> VM:
    """Inverse of ``VM.to_dict()`` (plus the store's aware timestamps, when present)."""
    return VM(
        id=record["id"],
        name=record["name"],
        host=record["host"],
        uri=record["uri"],
        state=State(record["state"]),
        persistent=bool(record.get("persistent", True)),
        vcpus=record.get("vcpus"),
        memory_kib=record.get("memory_kib"),
        os_type=record.get("os_type"),
        arch=record.get("arch"),
        disks=[_disk(d) for d in record.get("disks") or []],
        nics=[_nic(n) for n in record.get("nics") or []],
        meta=VmMeta(**(record.get("meta") or {})),
        first_seen=as_datetime(record.get("first_seen")),
        state_since=as_datetime(record.get("state_since")),
        guest=GuestFacts.from_dict(record["guest"]) if record.get("guest") else None,
        cluster=record.get("cluster"),
        datacenter=record.get("datacenter"),
        created=as_datetime(record.get("created")),
        powered_off_at=as_datetime(record.get("powered_off_at")),
        started_at=as_datetime(record.get("started_at")),
        template_id=record.get("template_id"),
        template_record=_template(record.get("template_record")),
    )


def _template(t: dict[str, Any] | None) -> TemplateRecord | None:
    if not t:
        return None
    dates = {k: as_datetime(t.get(k)) for k in ("created", "deprecated_at")}
    return TemplateRecord(**{**t, **dates})


def _nic(n: dict[str, Any]) -> Nic:
    origin = n.get("quarantined_from")
    fields = {k: v for k, v in n.items() if k != "quarantined_from"}
    return Nic(**fields, quarantined_from=NicOrigin(**origin) if origin else None)


def _disk(d: dict[str, Any]) -> Disk:
    chain = [
        Layer(
            path=layer.get("path"),
            format=layer.get("format"),
            type=layer.get("type", "file"),
            digest=layer.get("digest"),
            mtime=as_datetime(layer.get("mtime")),
            error=layer.get("error"),
        )
        for layer in d.get("chain") or []
    ]
    fields = {k: v for k, v in d.items() if k != "chain"}
    return Disk(**fields, chain=chain)


def as_datetime(value: Any) -> datetime | None:
    """A stored timestamp (ISO 8601 text, or already a datetime) as a datetime."""
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))

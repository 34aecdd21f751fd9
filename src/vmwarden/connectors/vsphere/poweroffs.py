"""When each VM was last powered off: one event-history query per sweep, not one per VM.

vCenter keeps no "powered off since" property; the ``VmPoweredOffEvent`` in its event
history says it. One ``EventHistoryCollector`` filtered to that event type over the sweep's
container is read page by page, keeping the newest event per VM. vCenter prunes events
after its retention period (30 days by default): a VM powered off before that has no event
and its power-off time is unknown here (dormancy then falls back to its disk files'
modification time, as for any platform).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger(__name__)

PAGE = 1000
MAX_PAGES = 200  # 200k power-off events: beyond it, older ones are not read


def last_power_offs(si: Any, root: Any) -> dict[str, datetime]:
    """VM moId → time of its newest ``VmPoweredOffEvent`` under ``root``."""
    from pyVmomi import vim

    spec = vim.event.EventFilterSpec(
        eventTypeId=["VmPoweredOffEvent"],
        entity=vim.event.EventFilterSpec.ByEntity(entity=root, recursion="all"),
        maxCount=PAGE,
    )
    collector = si.content.eventManager.CreateCollectorForEvents(filter=spec)
    out: dict[str, datetime] = {}
    try:
        collector.RewindCollector()
        for _ in range(MAX_PAGES):
            events = collector.ReadNextEvents(maxCount=PAGE)
            if not events:
                break
            for event in events:
                vm = getattr(getattr(event, "vm", None), "vm", None)
                when = getattr(event, "createdTime", None)
                if vm is None or when is None:
                    continue
                when = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
                moid = vm._moId
                if moid not in out or when > out[moid]:
                    out[moid] = when
    finally:
        try:
            collector.DestroyCollector()
        except Exception as exc:  # a collector left behind expires with the session
            log.debug("event collector not destroyed: %s", exc)
    return out

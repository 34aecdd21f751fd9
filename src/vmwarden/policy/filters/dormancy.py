"""``dormant``: shut off for longer than ``days`` (missing patches while off)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from pydantic import Field

from vmwarden.model import VM, State
from vmwarden.policy.filters.base import Filter, filters
from vmwarden.policy.schema import StrictModel
from vmwarden.policy.verdict import NO_MATCH, Verdict

if TYPE_CHECKING:
    from vmwarden.policy.context import Context


def aware(moment: datetime) -> datetime:
    """Naive timestamps are UTC (libvirt and file mtimes are read as UTC)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class DormantParams(StrictModel):
    days: int = Field(gt=0)


@filters.register("dormant")
class Dormant(Filter):
    """State ``shutoff`` for more than ``days``.

    Shut off since ``state_since`` (from history); for a VM first seen shut off, since the
    platform's own power-off time (``powered_off_at``: vSphere's last VmPoweredOffEvent),
    else the newest modification time of its disks' own files (``chain[0]`` of
    ``device: disk`` disks). None known → unknown. Running or paused VMs are not dormant.

    Example:
        - name: dormant-30d
          resource: vm
          severity: low
          filters: [{type: dormant, days: 30}]
    """

    Params = DormantParams

    def match(self, resource: VM, ctx: Context) -> Verdict:
        if resource.state != State.SHUTOFF:
            return NO_MATCH
        since, basis = resource.state_since, "history"
        if since is None and resource.powered_off_at is not None:
            since, basis = resource.powered_off_at, "platform power-off time"
        if since is None:
            mtimes = [
                aware(d.chain[0].mtime)
                for d in resource.disks
                if d.device == "disk" and d.chain and d.chain[0].mtime is not None
            ]
            since, basis = (max(mtimes), "disk mtime") if mtimes else (None, "")
        if since is None:
            return Verdict.unknown("shut off since an unknown time (no history, no disk mtime)")
        off = aware(ctx.now) - aware(since)
        if off <= timedelta(days=self.params.days):
            return NO_MATCH
        return Verdict.match(days_off=off.days, since=since.isoformat(), basis=basis)

"""Snapshots vmwarden takes to look inside an instance's volumes, and never leaks.

An EBS volume is read through a snapshot of it (the EBS direct APIs read snapshots, not
volumes). Every snapshot taken is tagged ``vmwarden:scan=<token>`` and deleted once the
sweep is done with it; before it is created, its token is written to a journal file on this
machine (fsynced), so a process killed between ``create_snapshot`` and ``delete_snapshot``
leaves a record: the next connection that reads disks in that region lists the snapshots
tagged ``vmwarden:scan``, deletes those whose token the journal holds for a process that
is gone, and forgets them. A tagged snapshot the journal does not know (another machine's
sweep in progress, or an operator's) is never touched.

The journal is ``$XDG_STATE_HOME/vmwarden/aws-scan-snapshots.json`` (platformdirs), one
entry per token: region, volume, pid, host, and the snapshot id once known.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from vmwarden.connectors.snapshot_journal import SnapshotJournal, journal_file
from vmwarden.errors import ConnectorError

log = logging.getLogger(__name__)

SCAN_TAG = "vmwarden:scan"
#: How long a snapshot may take to complete before the volume is unknown (real EBS: minutes
#: for a first snapshot of a large volume; incremental ones are quick).
COMPLETE_TIMEOUT = 1800.0
POLL = 5.0


def journal_path() -> Path:
    return journal_file("aws-scan-snapshots.json")


class ScanJournal(SnapshotJournal):
    """The EBS scan snapshots in flight: region, volume and the snapshot id once known."""

    def __init__(self, path: Path | None = None) -> None:
        super().__init__(path or journal_path(), "region")

    def begin(self, region: str, volume_id: str) -> str:
        return self.begin_many(region, [volume_id])[volume_id]

    def begin_many(self, region: str, volume_ids: list[str]) -> dict[str, str]:
        """One entry per volume, in one write; volume → token."""
        fields = [{"volume": vid, "snapshot": None} for vid in volume_ids]
        return dict(zip(volume_ids, self.add(region, fields), strict=True))

    def created_many(self, snapshots: dict[str, str]) -> None:
        """token → snapshot id, in one write."""
        self.update({token: {"snapshot": sid} for token, sid in snapshots.items()})

    def created(self, token: str, snapshot_id: str) -> None:
        self.created_many({token: snapshot_id})

    def done_many(self, tokens: list[str]) -> None:
        self.forget(tokens)

    def done(self, token: str) -> None:
        self.forget([token])


class ScanSnapshots:
    """The snapshots one connection takes: ``take`` (journaled, tagged, completed),
    ``readable`` (which snapshot the EBS direct APIs read for it), ``release_all``."""

    def __init__(self, ec2: Any, region: str, journal: ScanJournal | None = None) -> None:
        self._ec2 = ec2
        self.region = region
        self.journal = journal or ScanJournal()
        self.taken: dict[str, str] = {}  # snapshot id → journal token
        self._swept = False

    def take(self, volume_id: str) -> str:
        """A completed snapshot of the volume, tagged and journaled; its id.

        Raises:
            ConnectorError: the snapshot could not be made or did not complete in time.
        """
        sid = self._create(volume_id)
        self._wait([sid])
        return sid

    def take_many(self, volume_ids: list[str]) -> dict[str, str | Exception]:
        """Snapshots of every volume, all started before any is waited for (a first
        snapshot of a large volume takes minutes: a sweep waits for the slowest, not for
        the sum); volume → snapshot id, or the error that volume met."""
        self.sweep_leftovers()
        vols = list(dict.fromkeys(volume_ids))
        tokens = self.journal.begin_many(self.region, vols)
        out: dict[str, str | Exception] = {}
        for vid in vols:
            try:
                out[vid] = self._create(vid, tokens[vid])
            except Exception as exc:  # this volume is unknown with the reason; others go on
                out[vid] = exc
        self.journal.created_many(
            {tokens[v]: sid for v, sid in out.items() if isinstance(sid, str)}
        )
        self.journal.done_many([tokens[v] for v, sid in out.items() if not isinstance(sid, str)])
        started = [sid for sid in out.values() if isinstance(sid, str)]
        failed = self._wait(started, raise_first=False)
        for vid, sid in out.items():
            if isinstance(sid, str) and sid in failed:
                out[vid] = ConnectorError(f"scan snapshot {sid} of {vid} is {failed[sid]}")
        return out

    def _create(self, volume_id: str, token: str | None = None) -> str:
        """Journal (unless the caller did, giving ``token``), then create a tagged snapshot
        of the volume (not waited for)."""
        own_entry = token is None
        if token is None:
            self.sweep_leftovers()
            token = self.journal.begin(self.region, volume_id)
        try:
            snap = self._ec2.create_snapshot(
                VolumeId=volume_id,
                Description=f"vmwarden scan of {volume_id} (deleted after the scan)",
                TagSpecifications=[
                    {"ResourceType": "snapshot", "Tags": [{"Key": SCAN_TAG, "Value": token}]}
                ],
            )
        except Exception:
            if own_entry:
                self.journal.done(token)  # nothing was created
            raise
        sid = str(snap["SnapshotId"])
        if own_entry:
            self.journal.created(token, sid)
        self.taken[sid] = token
        return sid

    def readable(self, snapshot_id: str, volume_id: str) -> str:
        """The snapshot the direct APIs read for ``volume_id``: the one just taken.

        The one seam the tests replace: moto's direct APIs cannot read a snapshot made by
        ``create_snapshot``, so there a test maps the volume to a snapshot it wrote block by
        block, while ``take`` and ``release_all`` still run against moto as here."""
        return snapshot_id

    def _wait(self, sids: list[str], *, raise_first: bool = True) -> dict[str, str]:
        """Until every snapshot is completed (one describe per poll for all of them); the
        ones that failed or did not complete in time, with their state.

        Raises:
            ConnectorError: ``raise_first`` and one failed.
        """
        deadline = time.monotonic() + COMPLETE_TIMEOUT
        pending, failed = list(sids), {}
        while pending:
            states: dict[str, str] = {}
            for start in range(0, len(pending), 200):
                got = self._ec2.describe_snapshots(SnapshotIds=pending[start : start + 200])
                states |= {str(x["SnapshotId"]): str(x.get("State")) for x in got["Snapshots"]}
            late = time.monotonic() > deadline
            for sid in list(pending):
                state = states.get(sid, "missing")
                if state == "completed":
                    pending.remove(sid)
                elif state in ("error", "missing") or late:
                    failed[sid] = state if not late else f"{state} after {COMPLETE_TIMEOUT:.0f} s"
                    pending.remove(sid)
            if failed and raise_first:
                sid, state = next(iter(failed.items()))
                raise ConnectorError(f"scan snapshot {sid} is {state}, not completed")
            if pending:
                time.sleep(POLL)
        return failed

    def release(self, snapshot_id: str) -> None:
        """Delete a snapshot this connection took and forget its journal entry."""
        token = self.taken.pop(snapshot_id, None)
        self._delete(snapshot_id)
        if token is not None:
            self.journal.done(token)

    def release_all(self) -> list[str]:
        """Delete every snapshot taken (best effort: one that fails stays journaled, for the
        next run); the ids deleted."""
        deleted = []
        for sid in list(self.taken):
            try:
                self._delete(sid)
                deleted.append(sid)
            except Exception as exc:  # the journal keeps it; the next run deletes it
                log.warning("scan snapshot %s not deleted (next run will): %s", sid, exc)
        self.journal.done_many([self.taken.pop(sid) for sid in deleted])  # one write
        return deleted

    def sweep_leftovers(self) -> list[str]:
        """Delete snapshots tagged ``vmwarden:scan`` that the journal holds for a process
        that is gone (once per connection); the ids deleted."""
        if self._swept:
            return []
        self._swept = True
        abandoned = self.journal.abandoned(self.region)
        if not abandoned:
            return []
        pages = self._ec2.get_paginator("describe_snapshots").paginate(
            OwnerIds=["self"], Filters=[{"Name": "tag-key", "Values": [SCAN_TAG]}]
        )
        deleted = []
        for page in pages:
            for snap in page.get("Snapshots") or []:
                tags = {t.get("Key"): t.get("Value") for t in snap.get("Tags") or []}
                if tags.get(SCAN_TAG) in abandoned:
                    self._delete(str(snap["SnapshotId"]))
                    deleted.append(str(snap["SnapshotId"]))
        for token in abandoned:
            self.journal.done(token)  # deleted now, or never created
        return deleted

    def _delete(self, snapshot_id: str) -> None:
        import botocore.exceptions as bex

        try:
            self._ec2.delete_snapshot(SnapshotId=snapshot_id)
        except bex.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "InvalidSnapshot.NotFound":
                raise

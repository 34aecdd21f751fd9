"""AMIs as template records: who owns them, public or not, their dates, what they copy.

The template identity of an EC2 instance is its AMI id, judged against the catalog's
``aws_image:`` entries. An AMI copied from an approved one (``CopyImage``, often into
another region or with new encryption) is the same template under a new id, so its copy
sources are followed where AWS records them: ``SourceImageId`` (set by CopyImage since
2024), else the description AWS writes for a copy (``[Copied ami-… from REGION] …``), else
a ``vmwarden:copied-from`` tag the operator set. Those are only *trusted* on the scanned
account's own private AMIs: anyone can publish an AMI whose description claims to be a copy
of yours, so a public AMI, or one another account owns, is approved only when listed.

Two paginated describes per region, whatever the number of instances: the account's own
images (``Owners=["self"]``), and the other AMIs instances use, by id in chunks (an id AWS
no longer describes -- deregistered -- gets a record saying so, never a guess).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from vmwarden.model.vm import TemplateRecord

COPY_TAG = "vmwarden:copied-from"
AMI_ID = re.compile(r"^ami-[0-9a-f]{8,17}$")
_COPIED = re.compile(
    r"^\[Copied (ami-[0-9a-f]{8,17}) from [a-z0-9-]+\]|Copied from (ami-[0-9a-f]{8,17})"
)
#: Copies followed from one AMI (a copy of a copy …), against loops and long chains.
MAX_DEPTH = 8
#: Image ids per describe_images call.
CHUNK = 100


def describe_amis(ec2: Any, used: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The account's own AMIs and every other AMI id in ``used``, by id (what AWS returns)."""
    found: dict[str, dict[str, Any]] = {}
    for page in ec2.get_paginator("describe_images").paginate(Owners=["self"]):
        for image in page.get("Images") or []:
            found[str(image["ImageId"])] = {**image, "_own": True}
    missing = sorted({i for i in used if AMI_ID.match(i) and i not in found})
    for start in range(0, len(missing), CHUNK):
        for image in _describe_ids(ec2, missing[start : start + CHUNK]):
            found.setdefault(str(image["ImageId"]), image)
    return found


def _describe_ids(ec2: Any, ids: list[str]) -> list[dict[str, Any]]:
    """Images of ``ids``; an id AWS refuses as not found is left out (halving the batch)."""
    import botocore.exceptions as bex

    if not ids:
        return []
    try:
        return list(ec2.describe_images(ImageIds=ids).get("Images") or [])
    except bex.ClientError as exc:
        if "NotFound" not in str(exc.response.get("Error", {}).get("Code", "")):
            raise
        if len(ids) == 1:
            return []
        half = len(ids) // 2
        return _describe_ids(ec2, ids[:half]) + _describe_ids(ec2, ids[half:])


def template_records(amis: Mapping[str, Mapping[str, Any]]) -> dict[str, TemplateRecord]:
    """A record per described AMI, copies followed where trusted (see the module doc)."""
    own = _own_account(amis)
    return {ami_id: _record(ami_id, amis, own) for ami_id in amis}


def record_for(
    ami_id: str, records: Mapping[str, TemplateRecord], described: bool = True
) -> TemplateRecord:
    """The record of ``ami_id``; one that says why when AWS did not describe it."""
    record = records.get(ami_id)
    if record is not None:
        return record
    why = "AWS does not describe this AMI (deregistered, or not shared with this account)"
    return TemplateRecord(id=ami_id, error=why if described else "AMIs were not described")


def _own_account(amis: Mapping[str, Mapping[str, Any]]) -> str | None:
    return next(
        (str(a["OwnerId"]) for a in amis.values() if a.get("_own") and a.get("OwnerId")), None
    )


def _record(ami_id: str, amis: Mapping[str, Mapping[str, Any]], own: str | None) -> TemplateRecord:
    image = amis[ami_id]
    owner = str(image.get("OwnerId") or "") or None
    is_own = bool(image.get("_own")) or (owner is not None and owner == own)
    public = image.get("Public")
    record = TemplateRecord(
        id=ami_id,
        name=str(image.get("Name") or "") or None,
        owner=owner,
        own=is_own,
        public=bool(public) if public is not None else None,
        created=_when(image.get("CreationDate")),
        deprecated_at=_when(image.get("DeprecationTime")),
    )
    current, seen = image, {ami_id}
    while len(record.copied_from) < MAX_DEPTH and _trusted(current, own):
        source = copy_source(current)
        if source is None or source in seen:
            break
        record.copied_from.append(source)
        seen.add(source)
        nxt = amis.get(source)
        if nxt is None:
            break  # another region's or account's: named, not followed
        current = nxt
    return record


def _trusted(image: Mapping[str, Any], own: str | None) -> bool:
    """Whether the image's own words about its source may be believed: ours, not public."""
    ours = bool(image.get("_own")) or (own is not None and str(image.get("OwnerId")) == own)
    return ours and not image.get("Public")


def copy_source(image: Mapping[str, Any]) -> str | None:
    """The AMI id this image was copied from, as AWS or the operator recorded it."""
    source = str(image.get("SourceImageId") or "")
    if AMI_ID.match(source):
        return source
    m = _COPIED.search(str(image.get("Description") or ""))
    if m is not None:
        return m.group(1) or m.group(2)
    for tag in image.get("Tags") or []:
        value = str(tag.get("Value") or "").strip()
        if tag.get("Key") == COPY_TAG and AMI_ID.match(value):
            return value
    return None


def _when(value: Any) -> datetime | None:
    """AWS's ISO timestamps (``2024-05-01T12:00:00.000Z``) as aware datetimes."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)

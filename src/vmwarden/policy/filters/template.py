"""``not-approved-template``: a disk comes from no approved template, by chain or by content."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from vmwarden.model import VM
from vmwarden.model.lineage import content_key
from vmwarden.policy.filters.base import Filter, filters
from vmwarden.policy.schema import StrictModel
from vmwarden.policy.verdict import NO_MATCH, Verdict

if TYPE_CHECKING:
    from vmwarden.policy.context import Context

#: Default similarity above which a full clone counts as derived from a template. Measured
#: (``make bench``, lineage rows): a used full clone and a grown copy score 1.0, another
#: debootstrap of the same release and an unrelated image score 0.0; halfway leaves room for
#: clones whose guests rewrote (and trimmed) much of the template over the years.
DEFAULT_THRESHOLD = 0.5


class NotApprovedTemplateParams(StrictModel):
    # fraction (0..1] of the template's sampled blocks a full clone must hold unchanged
    threshold: float = Field(default=DEFAULT_THRESHOLD, gt=0, le=1)


@filters.register("not-approved-template")
class NotApprovedTemplate(Filter):
    """Some disk comes from no approved template.

    A disk comes from an approved template when the root of its backing chain has an
    approved digest (linked clones: exact and fast), or else when its guest-visible content
    holds at least ``threshold`` (default 0.5) of the sampled blocks of a template approved
    with ``vmwarden template approve`` unchanged at the same offsets (full clones, whatever
    their format: ``virt-clone``, ``cp``, ``qemu-img convert``). The evidence names the
    closest template and the similarity. Templates listed only in the policy's
    ``templates:`` have no content signature: only their digest counts. At power-on (the
    admission hook) only comparisons a sweep cached are used; a disk not compared yet is
    unknown.

    A VM whose platform names its template (``VM.template_id``: an EC2 instance's AMI id)
    is judged by that alone, against the catalog's ``aws_image:`` entries: approved when
    the AMI is listed, or when it is a copy (``VM.template_record.copied_from``) of a listed
    one that the connector could follow (EC2: only the account's own private AMIs).

    Only ``device: disk`` disks with a source count (cdroms, floppies and empty drives carry
    no lineage); a VM without one is not judged (no-match). A root whose digest could not be
    computed makes the VM unknown, with the layer's error as the reason.

    Example:
        - name: unapproved-template
          resource: vm
          severity: high
          filters: [{type: not-approved-template, threshold: 0.5}]
          actions: [quarantine]
    """

    Params = NotApprovedTemplateParams

    def match(self, resource: VM, ctx: Context) -> Verdict:
        if resource.template_id is not None:
            # The platform names the template (EC2: the AMI): the catalog's ``aws_image``
            # entries decide, for it or a template it was copied from as the connector
            # trusts the record (a public AMI or another account's: only when listed).
            record = resource.template_record
            sources = record.copied_from if record is not None else []
            if resource.template_id in ctx.catalog or any(s in ctx.catalog for s in sources):
                return NO_MATCH
            evidence: dict[str, Any] = {"template_id": resource.template_id}
            if record is not None:
                evidence.update(owner=record.owner, public=record.public, own=record.own)
                if sources:
                    evidence["copied_from"] = sources
                if record.error:
                    evidence["template_error"] = record.error
            return Verdict.match(**evidence)
        unknown: str | None = None
        for disk in resource.disks:
            if disk.device != "disk" or not disk.chain:
                continue
            root = disk.chain[-1]
            if root.digest is None:
                if unknown is None:
                    why = root.error or "digest not computed"
                    unknown = f"disk {disk.target}: root {root.path}: {why}"
                continue
            if root.digest.lower() in ctx.catalog:
                continue
            content = ctx.estate.content_lineage.get(content_key(disk) or "")
            if content is not None and content.pending:
                unknown = unknown or f"disk {disk.target}: {content.error}"
                continue
            evidence: dict[str, Any] = {"disk": disk.target, "root": root.path}
            evidence["digest"] = root.digest
            if content is not None and content.similarity is not None:
                if content.similarity >= self.params.threshold:
                    continue
                evidence["closest_template"] = content.template
                evidence["similarity"] = round(content.similarity, 3)
            elif content is not None and content.error:
                evidence["content_lineage"] = content.error
            return Verdict.match(**evidence)
        return Verdict.unknown(unknown) if unknown else NO_MATCH

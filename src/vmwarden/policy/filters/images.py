"""Image filters: ``orphaned``, ``world-readable``, ``unencrypted``, ``template-changed``."""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING

from vmwarden.model import Image
from vmwarden.policy.filters.base import Filter, filters
from vmwarden.policy.filters.guest import NOT_INSPECTED
from vmwarden.policy.verdict import NO_MATCH, Verdict

if TYPE_CHECKING:
    from vmwarden.policy.context import Context


@filters.register("orphaned")
class Orphaned(Filter):
    """No VM defined on any scanned host uses the image, directly or as a backing file,
    and it is not an approved template (storage discovery's ``kind: orphaned``; an image
    whose digest is in the policy's catalog is never orphaned). Not classified → unknown.

    Example:
        - name: forgotten-disks
          resource: image
          severity: low
          filters: [orphaned]
    """

    resources = ("image",)

    def match(self, resource: Image, ctx: Context) -> Verdict:
        if resource.kind is None:
            return Verdict.unknown("storage discovery did not classify the image")
        if resource.kind != "orphaned":
            return NO_MATCH
        if resource.digest is not None and resource.digest.lower() in ctx.catalog:
            return NO_MATCH
        mtime = resource.mtime.isoformat() if resource.mtime else None
        return Verdict.match(path=resource.path, size=resource.size, mtime=mtime)


@filters.register("world-readable")
class WorldReadable(Filter):
    """Any user on the host can read the image file (``o+r``): every secret in the guest
    (shadow, keys, data) is readable by them. Mode not read → unknown.

    Example:
        - name: readable-disks
          resource: image
          severity: high
          filters: [world-readable]
    """

    resources = ("image",)

    def match(self, resource: Image, ctx: Context) -> Verdict:
        if resource.mode is None:
            return Verdict.unknown("file mode could not be read")
        if resource.mode & stat.S_IROTH:
            return Verdict.match(mode=oct(stat.S_IMODE(resource.mode)))
        return NO_MATCH


@filters.register("unencrypted")
class Unencrypted(Filter):
    """Inspection found no encrypted volume (LUKS) holding the guest's data. Not
    inspected, or encryption not determined → unknown.

    Example:
        - name: plaintext-disks
          resource: image
          severity: medium
          filters: [unencrypted]
    """

    resources = ("image",)

    def match(self, resource: Image, ctx: Context) -> Verdict:
        if resource.guest is None:
            return Verdict.unknown(NOT_INSPECTED)
        if resource.guest.encrypted is None:
            return Verdict.unknown("encryption could not be determined")
        return NO_MATCH if resource.guest.encrypted else Verdict.match(encrypted=False)


def catalog_paths(ctx: Context) -> dict[str, tuple[str, str]]:
    """Normalised approved path → (template name, digest recorded at approval)."""
    return {os.path.normpath(p): v for p, v in ctx.estate.catalog_paths.items()}


@filters.register("template-changed")
class TemplateChanged(Filter):
    """The image sits where an approved template was recorded (``template approve``), but
    its digest is no longer in the catalog: the template changed under people's feet.
    Other images → no-match; digest not computed → unknown.

    Example:
        - name: tampered-template
          resource: image
          severity: critical
          filters: [template-changed]
          actions: [notify]
    """

    resources = ("image",)

    def prepare(self, ctx: Context) -> None:
        ctx.index("catalog-paths", catalog_paths)

    def match(self, resource: Image, ctx: Context) -> Verdict:
        recorded = ctx.index("catalog-paths", catalog_paths).get(os.path.normpath(resource.path))
        if recorded is None:
            return NO_MATCH
        name, approved = recorded
        if resource.digest is None:
            return Verdict.unknown(f"digest of template {name!r} not computed")
        if resource.digest.lower() in ctx.catalog:
            return NO_MATCH
        return Verdict.match(template=name, approved=approved, digest=resource.digest)

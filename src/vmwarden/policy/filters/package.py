"""``package``: software that must not be installed, or must be (from offline inspection)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from pydantic import model_validator

from vmwarden.model import VM
from vmwarden.policy.filters.base import Filter, filters
from vmwarden.policy.schema import Name, StrictModel
from vmwarden.policy.verdict import NO_MATCH, Verdict

if TYPE_CHECKING:
    from vmwarden.policy.context import Context


class PackageParams(StrictModel):
    installed: list[Name] = []  # forbidden: match when any is installed
    missing: list[Name] = []  # required: match when any is absent

    @model_validator(mode="after")
    def _something(self) -> PackageParams:
        if not self.installed and not self.missing:
            raise ValueError("give 'installed' (forbidden) or 'missing' (required) packages")
        return self


def package_names(guest: dict[str, Any]) -> set[str] | None:
    """Names from ``guest["packages"]``: a name→version mapping, or a list of names or of
    records with ``name``. None when the inspection did not list packages."""
    packages = guest.get("packages")
    if isinstance(packages, dict):
        return set(packages)
    if isinstance(packages, list):
        names: Iterable[Any] = (p.get("name") if isinstance(p, dict) else p for p in packages)
        return {n for n in names if isinstance(n, str)}
    return None


@filters.register("package")
class Package(Filter):
    """A forbidden package is installed (``installed:``) or a required one is absent
    (``missing:``), per the guest's offline inspection. Not inspected → unknown.

    Example:
        - name: forbidden-software
          resource: vm
          severity: high
          filters: [{type: package, installed: [telnetd, netcat-traditional]}]
        - name: no-antivirus
          resource: vm
          severity: medium
          filters: [{type: package, missing: [clamav]}]
    """

    Params = PackageParams

    def match(self, resource: VM, ctx: Context) -> Verdict:
        if resource.guest is None:
            return Verdict.unknown("guest not inspected")
        names = package_names(resource.guest)
        if names is None:
            return Verdict.unknown("inspection found no package database")
        forbidden = sorted(names.intersection(self.params.installed))
        absent = sorted(set(self.params.missing) - names)
        evidence: dict[str, Any] = {}
        if forbidden:
            evidence["packages"] = forbidden
        if absent:
            evidence["missing"] = absent
        return Verdict.match(**evidence) if evidence else NO_MATCH

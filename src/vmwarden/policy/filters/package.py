"""``package`` and ``stale-patches``: what software a guest holds, and how old it is."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field, model_validator

from vmwarden.policy.filters.base import filters
from vmwarden.policy.filters.guest import GuestFilter
from vmwarden.policy.schema import Name, StrictModel
from vmwarden.policy.verdict import NO_MATCH, Verdict
from vmwarden.vulns.versions import version_key

if TYPE_CHECKING:
    from vmwarden.model import GuestFacts
    from vmwarden.model import Package as PackageRecord
    from vmwarden.policy.context import Context

NO_PACKAGES = "inspection found no package database"


class PackageParams(StrictModel):
    installed: list[Name] = []  # forbidden: match when any is installed
    missing: list[Name] = []  # required: match when any is absent

    @model_validator(mode="after")
    def _something(self) -> PackageParams:
        if not self.installed and not self.missing:
            raise ValueError("give 'installed' (forbidden) or 'missing' (required) packages")
        return self


@filters.register("package")
class Package(GuestFilter):
    """A forbidden package is installed (``installed:``) or a required one is absent
    (``missing:``), by binary package name in the guest's dpkg/rpm/apk database.

    Not inspected, or no package database read → unknown.

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

    def judge(self, guest: GuestFacts, ctx: Context) -> Verdict:
        if guest.packages is None:
            return Verdict.unknown(NO_PACKAGES)
        names = ctx.guest(guest).packages() or {}
        evidence: dict[str, Any] = {}
        if forbidden := [n for n in self.params.installed if n in names]:
            evidence["packages"] = sorted(set(forbidden))
        if absent := [n for n in self.params.missing if n not in names]:
            evidence["missing"] = sorted(set(absent))
        return Verdict.match(**evidence) if evidence else NO_MATCH


class StalePatchesParams(StrictModel):
    baseline: dict[Name, Name] = Field(min_length=1)  # package name → minimum version


@filters.register("stale-patches")
class StalePatches(GuestFilter):
    """An installed package is older than its ``baseline`` minimum version.

    Versions compare by the package's own manager rules: dpkg's for ``dpkg`` (epochs,
    ``~`` before release; native, see ``vulns.versions``), univers' rpm for ``rpm`` and
    apk for ``apk``, dotted numbers for Windows programs (``windows``). Packages are matched
    by binary name; a baseline package that is not installed is not stale (use ``package
    missing:`` to require it). A version that does not parse makes the guest unknown unless
    another package is already stale.

    Example:
        - name: openssl-behind
          resource: vm
          severity: high
          filters:
            - type: stale-patches
              baseline: {openssl: "3.0.11-1~deb12u2", libssl3: "3.0.11-1~deb12u2"}
    """

    Params = StalePatchesParams

    def judge(self, guest: GuestFacts, ctx: Context) -> Verdict:
        if guest.packages is None:
            return Verdict.unknown(NO_PACKAGES)
        view = ctx.guest(guest)
        installed = view.packages() or {}
        if view.repeated:  # a name on several records (multi-arch): judge every record
            return self._judge(guest.packages)
        # One lookup per baseline package instead of a scan of every installed one.
        found = [p for name in self.params.baseline if (p := installed.get(name)) is not None]
        verdict = self._judge(found)
        if verdict.is_unknown:  # name the first unreadable version in the guest's order
            return self._judge(guest.packages)
        return verdict

    def _judge(self, packages: list[PackageRecord]) -> Verdict:
        baseline: dict[str, str] = self.params.baseline
        stale: list[dict[str, str]] = []
        unknown: str | None = None
        for pkg in packages:
            minimum = baseline.get(pkg.name)
            if minimum is None:
                continue
            have = version_key(pkg.manager, pkg.version)
            want = version_key(pkg.manager, minimum)
            if have is None or want is None:
                unknown = unknown or (
                    f"cannot compare {pkg.name} {pkg.version!r} with {minimum!r} "
                    f"as {pkg.manager} versions"
                )
                continue
            if have < want:
                stale.append({"name": pkg.name, "installed": pkg.version, "baseline": minimum})
        if stale:
            return Verdict.match(packages=sorted(stale, key=lambda s: s["name"]))
        return Verdict.unknown(unknown) if unknown else NO_MATCH

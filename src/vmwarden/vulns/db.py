"""The vulnerability database: OSV records indexed by (ecosystem, package), matched to guests.

Matching is linear in a guest's packages: one dict lookup per package in the merged index of
the guest's ecosystems, and the univers comparisons only for packages that have advisories,
memoised per (ecosystems, package, version) because clones repeat the same versions.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from vmwarden.vulns.ecosystems import (
    SOURCE_NAMED,
    EcosystemKey,
    guest_ecosystems,
    parse_ecosystem,
    range_version_class,
)
from vmwarden.vulns.ranges import Interval, intervals
from vmwarden.vulns.severity import RANK, assess, label

if TYPE_CHECKING:
    from vmwarden.model import GuestFacts, Package
    from vmwarden.vulns.records import Affected, Record

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class VulnMatch:
    """One advisory affecting one installed package.

    ``package`` is the name the advisory uses (the *source* package for Debian, Ubuntu and
    Alpine), ``installed`` the guest's version, ``fixed`` the first fixed version (None: no
    fix yet, or only ``last_affected`` known). ``severity`` is none/low/medium/high/critical or
    None when neither the record nor any of its aliases in the feed carries one; ``score`` is
    the CVSS base score when a vector was scored.
    """

    id: str
    aliases: tuple[str, ...]
    package: str
    installed: str
    fixed: str | None
    severity: str | None
    score: float | None

    def at_least(self, minimum: str) -> bool | None:
        """Whether the severity reaches ``minimum``; None when the severity is unknown."""
        if self.severity is None:
            return None
        return RANK[self.severity] >= RANK[minimum]


@dataclass(slots=True)
class _Info:
    id: str
    aliases: tuple[str, ...]
    related: tuple[str, ...]
    severity: str | None
    score: float | None


@dataclass(frozen=True, slots=True)
class _Advisory:
    info: _Info
    package: str
    family: str
    intervals: tuple[Interval, ...]
    versions: frozenset[str]

    def affects(self, version: str) -> tuple[bool, str | None]:
        """(affected, fixed version) for an installed version string."""
        for interval in self.intervals:
            if interval.affects(version):
                return True, interval.fixed
        # The explicit list names versions the ranges may not cover (or that do not parse).
        return version in self.versions, None


@dataclass
class VulnDB:
    """OSV advisories for the distributions vmwarden matches. Build with ``VulnDB.load``."""

    warnings: list[str] = field(default_factory=list)
    records: int = 0
    skipped: int = 0
    ignored: int = 0  # valid records for ecosystems vmwarden does not match (PyPI, npm, ...)
    _index: dict[EcosystemKey, dict[str, list[_Advisory]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list))
    )
    _by_id: dict[str, _Info] = field(default_factory=dict)
    _merged: dict[tuple[EcosystemKey, ...], dict[str, list[_Advisory]]] = field(
        default_factory=dict
    )
    # ecosystems → (package, version) → matches; clones repeat the same few versions
    _cache: dict[tuple[EcosystemKey, ...], dict[tuple[str, str], tuple[VulnMatch, ...]]] = field(
        default_factory=dict
    )

    @classmethod
    def load(cls, path: str | Path, **limits: int) -> VulnDB:
        """Records from a directory of ``.json`` files, a ``.zip`` (as osv.dev ships
        ``Debian.zip``) or one ``.json`` file. Malformed records are skipped and listed in
        ``warnings``; ``limits`` (``max_file_bytes``, ``max_files``) bound hostile feeds."""
        from vmwarden.vulns.feed import read_feed

        db = cls()
        for source, data in read_feed(Path(path), db.warn, **limits):
            db.add_raw(data, source)
        return db

    def warn(self, message: str) -> None:
        if len(self.warnings) < 1000:
            self.warnings.append(message)
        elif len(self.warnings) == 1000:
            self.warnings.append("further warnings suppressed")
        log.warning("%s", message)

    def add_raw(self, data: object, source: str) -> bool:
        """Validate and index one decoded JSON record; False (with a warning) if rejected."""
        from vmwarden.vulns.records import parse_record

        try:
            record = parse_record(data)
        except ValueError as exc:
            self.skipped += 1
            self.warn(f"{source}: skipped malformed OSV record: {exc}")
            return False
        try:
            return self.add(record)
        except ValueError as exc:
            self.skipped += 1
            self.warn(f"{source}: skipped OSV record {record.id}: {exc}")
            return False

    def add(self, record: Record) -> bool:
        """Index a validated record; False when withdrawn or for no matched ecosystem.
        Raises ValueError when a range's versions do not parse (nothing is indexed then)."""
        if record.withdrawn:
            self.ignored += 1
            return False
        rating, score = assess([s.model_dump() for s in record.severity], record.database_specific)
        if rating is None and record.summary:
            # Red Hat, AlmaLinux and Rocky put the severity in the summary: "Moderate: ...".
            rating = label(record.summary.partition(":")[0]) if ":" in record.summary else None
        info = _Info(
            id=record.id,
            aliases=tuple(record.aliases),
            related=(*record.related, *record.upstream),  # where a missing severity is sought
            severity=rating,
            score=score,
        )
        staged: list[tuple[EcosystemKey, _Advisory]] = []
        for affected in record.affected:
            staged.extend(self._compile(info, affected))
        self._by_id.setdefault(record.id, info)
        for alias in (*info.aliases, *record.upstream):  # the same vulnerability, other ids
            self._by_id.setdefault(alias, info)
        if not staged:
            self.ignored += 1
            return False
        for key, advisory in staged:
            self._index[key][advisory.package].append(advisory)
        self.records += 1
        self._merged.clear()
        self._cache.clear()
        return True

    def _compile(self, info: _Info, affected: Affected) -> list[tuple[EcosystemKey, _Advisory]]:
        if affected.package is None:
            return []
        key = parse_ecosystem(affected.package.ecosystem)
        if key is None:
            return []
        family = key[0]
        found: list[Interval] = []
        for rng in affected.ranges:
            cls = range_version_class(rng.type, family)
            if cls is not None:
                found.extend(intervals(rng.events, cls))
        if not found and not affected.versions:
            return []
        if info.severity is None and (affected.severity or affected.database_specific):
            rating, score = assess(
                [s.model_dump() for s in affected.severity], affected.database_specific
            )
            info = _Info(info.id, info.aliases, info.related, rating, score)
        advisory = _Advisory(
            info, affected.package.name, family, tuple(found), frozenset(affected.versions)
        )
        return [(key, advisory)]

    def __len__(self) -> int:
        return self.records

    def ecosystems(self) -> list[str]:
        """``family:release`` of every indexed ecosystem, sorted (for reports)."""
        return sorted(f"{f}:{r}" if r else f for f, r in self._index)

    def covers(self, facts: GuestFacts) -> bool:
        """Whether the feed has advisories for the guest's OS (otherwise nothing can clear it)."""
        return any(key in self._index for key in guest_ecosystems(facts))

    def match(self, facts: GuestFacts) -> list[VulnMatch]:
        """Advisories affecting the guest's installed packages: in the guest's package order,
        each package's by advisory id; one match per advisory per (package, version), so two
        binaries of one source at one version count once.

        Empty when packages are unknown or the OS is not covered: callers that must tell
        "clean" from "could not judge" check ``facts.packages`` and ``covers`` first.
        """
        if not facts.packages:
            return []
        keys = tuple(k for k in guest_ecosystems(facts) if k in self._index)
        if not keys:
            return []
        merged = self._merged.get(keys)
        if merged is None:
            merged = self._merged[keys] = self._merge(keys)
        by_source = keys[0][0] in SOURCE_NAMED
        cache = self._cache.get(keys)
        if cache is None:
            cache = self._cache[keys] = {}
        found: list[VulnMatch] = []
        seen: set[tuple[str, str]] = set()
        for pkg in facts.packages:
            name = (pkg.source or pkg.name) if by_source else pkg.name
            advisories = merged.get(name)
            if advisories is None:
                if " " not in name:  # the common case: no advisory for this package
                    continue
                # dpkg writes "Source: openssl (3.0.11-1)" when the versions differ.
                name = name.partition(" ")[0]
                advisories = merged.get(name)
                if advisories is None:
                    continue
            ck = (name, pkg.version)
            if ck in seen:
                continue
            seen.add(ck)
            hits = cache.get(ck)
            if hits is None:
                hits = cache[ck] = self._judge(advisories, pkg)
            found.extend(hits)
        return found

    def _merge(self, keys: tuple[EcosystemKey, ...]) -> dict[str, list[_Advisory]]:
        merged: dict[str, list[_Advisory]] = defaultdict(list)
        for key in keys:
            for name, advisories in self._index[key].items():
                merged[name].extend(advisories)
        return dict(merged)

    def _judge(self, advisories: list[_Advisory], pkg: Package) -> tuple[VulnMatch, ...]:
        hits: dict[str, VulnMatch] = {}
        for advisory in advisories:
            affected, fixed = advisory.affects(pkg.version)
            if not affected:
                continue
            info = advisory.info
            severity, score = info.severity, info.score
            if severity is None:
                severity, score = self._alias_severity(info)
            hits.setdefault(
                info.id,
                VulnMatch(
                    info.id, info.aliases, advisory.package, pkg.version, fixed, severity, score
                ),
            )
        return tuple(sorted(hits.values(), key=lambda m: m.id))

    def _alias_severity(self, info: _Info) -> tuple[str | None, float | None]:
        """The highest severity among the record's aliases and related ids in this feed
        (Debian DSAs carry none; the CVE records they alias may)."""
        best: tuple[str | None, float | None] = (None, None)
        for other_id in (*info.aliases, *info.related):
            other = self._by_id.get(other_id)
            if other is None or other.severity is None or other is info:
                continue
            if best[0] is None or RANK[other.severity] > RANK[best[0]]:
                best = (other.severity, other.score)
        return best

"""OSV ``ranges`` as univers constraints: the intervals of versions an advisory affects.

OSV orders a range's events by version and reads them as a timeline: ``introduced`` opens an
affected interval (``"0"`` means from the beginning), ``fixed`` closes it exclusive,
``last_affected`` closes it inclusive, ``limit`` only bounds git ranges. Each closed interval
becomes a pair of univers ``VersionConstraint``s (``>= introduced``, ``< fixed``).
"""

from __future__ import annotations

from dataclasses import dataclass

from univers.version_constraint import VersionConstraint
from univers.versions import Version

from vmwarden.vulns.ecosystems import parse_version
from vmwarden.vulns.records import Event


@dataclass(frozen=True, slots=True)
class Interval:
    """``lower`` and ``upper`` are None when unbounded; ``fixed`` is the version that fixes it;
    ``scheme`` the univers class installed versions are parsed with to compare."""

    lower: VersionConstraint | None
    upper: VersionConstraint | None
    fixed: str | None
    scheme: type[Version]

    def affects(self, installed: str) -> bool:
        """Whether the installed version string lies in the interval (False if unparseable)."""
        version = parse_version(self.scheme, installed)
        return version is not None and self.contains(version)

    def contains(self, version: Version) -> bool:
        if self.lower is not None and not self.lower.contains(version):
            return False
        return self.upper is None or self.upper.contains(version)


def _order(item: tuple[Version | None, Event]) -> tuple[bool, Version | int, bool]:
    version, event = item
    return (version is not None, version if version is not None else 0, event.kind == "introduced")


def intervals(events: list[Event], cls: type[Version]) -> list[Interval]:
    """The affected intervals of one range; ValueError when a version does not parse."""
    timeline: list[tuple[Version | None, Event]] = []
    for event in events:
        if event.kind == "limit":
            continue
        if event.kind == "introduced" and event.version == "0":
            timeline.append((None, event))
            continue
        version = parse_version(cls, event.version)
        if version is None:
            raise ValueError(f"{event.kind} version {event.version!r} is not a {cls.__name__}")
        timeline.append((version, event))
    # "0" first, then by version; at equal versions a closing event sorts before an opening one.
    timeline.sort(
        key=lambda item: (item[0] is not None, item[0] or 0, item[1].kind == "introduced")
    )

    found: list[Interval] = []
    is_open, lower = False, None
    for version, event in timeline:
        if event.kind == "introduced":
            if not is_open:
                is_open = True
                lower = None if version is None else VersionConstraint(">=", version)
        elif is_open and version is not None:
            comparator = "<" if event.kind == "fixed" else "<="
            fixed = event.version if event.kind == "fixed" else None
            found.append(Interval(lower, VersionConstraint(comparator, version), fixed, cls))
            is_open, lower = False, None
    if is_open:
        found.append(Interval(lower, None, None, cls))
    return found

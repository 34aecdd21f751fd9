"""What several filters derive from one guest's facts, derived once per evaluation.

``package``, ``stale-patches`` and ``ssh-root-login`` all ask "is package X installed?", and
``service`` and ``no-time-sync`` both want the enabled units without their ``.service``
suffix. Scanning a guest's ~1,000 packages once per such rule made those rules most of an
evaluation; a ``GuestView`` scans once and answers every rule by dict lookup.

Views live in the ``Context`` (one evaluation), so facts that change between sweeps are
always seen afresh: nothing derived here outlives the evaluation it was built for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vmwarden.model import GuestFacts, Package


def unit(name: str) -> str:
    """``ssh.service`` → ``ssh``; other unit types (``.socket``, ``.timer``) keep theirs."""
    return name.removesuffix(".service")


_UNSET: object = object()


class GuestView:
    """Lazily derived, read-only indexes over one ``GuestFacts``; None where facts are None."""

    __slots__ = ("_by_name", "_repeated", "_units", "facts")

    def __init__(self, facts: GuestFacts) -> None:
        self.facts = facts
        self._by_name: object = _UNSET
        self._repeated = False
        self._units: object = _UNSET

    def packages(self) -> dict[str, Package] | None:
        """Package name → its first record (multi-arch names repeat; see ``repeated``)."""
        if self._by_name is _UNSET:
            packages = self.facts.packages
            if packages is None:
                self._by_name = None
            else:
                # reversed: when a name repeats, its first record is the one kept
                by_name = {p.name: p for p in reversed(packages)}
                self._by_name = by_name
                self._repeated = len(by_name) != len(packages)
        return self._by_name  # type: ignore[return-value]

    @property
    def repeated(self) -> bool:
        """Whether some package name occurs more than once (e.g. ``libc6`` amd64 and i386)."""
        self.packages()
        return self._repeated

    def units(self) -> set[str] | None:
        """Enabled units, ``.service`` dropped; None when the services were not read."""
        if self._units is _UNSET:
            enabled = self.facts.services_enabled
            self._units = None if enabled is None else {unit(s) for s in enabled}
        return self._units  # type: ignore[return-value]

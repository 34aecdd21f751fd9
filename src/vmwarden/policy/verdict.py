"""The tri-state answer of a filter: match, no-match, or unknown.

Unknown exists because data that could not be collected must never clear a VM: a rule fires
on unknown, ``not`` of unknown is unknown, and the combinators only conclude "no-match" when
some child positively says so (``and``) or every child does (``or``).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum
from typing import Any


class Outcome(Enum):
    MATCH = "match"
    NO_MATCH = "no-match"
    UNKNOWN = "unknown"


class Verdict:
    """One filter's answer for one resource: ``match(**evidence)``, ``unknown(...)``, NO_MATCH."""

    __slots__ = ("evidence", "outcome", "reason")

    def __init__(
        self, outcome: Outcome, evidence: dict[str, Any] | None = None, reason: str | None = None
    ) -> None:
        self.outcome = outcome
        self.evidence = evidence if evidence is not None else {}
        self.reason = reason

    @classmethod
    def match(cls, **evidence: Any) -> Verdict:
        return cls(Outcome.MATCH, evidence)

    @classmethod
    def unknown(cls, reason: str) -> Verdict:
        return cls(Outcome.UNKNOWN, reason=reason)

    @property
    def matched(self) -> bool:
        return self.outcome is Outcome.MATCH

    @property
    def is_unknown(self) -> bool:
        return self.outcome is Outcome.UNKNOWN

    @property
    def fires(self) -> bool:
        """Whether a rule fires: on a match, and on unknown (unknown never clears)."""
        return self.outcome is not Outcome.NO_MATCH

    def finding_evidence(self) -> dict[str, Any]:
        """What a finding records: the evidence, or ``{"unknown": reason}``."""
        if self.outcome is Outcome.UNKNOWN:
            return {"unknown": self.reason}
        return dict(self.evidence)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Verdict):
            return NotImplemented
        return (self.outcome, self.evidence, self.reason) == (
            other.outcome,
            other.evidence,
            other.reason,
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        if self.outcome is Outcome.MATCH:
            return f"Verdict.match({self.evidence!r})"
        if self.outcome is Outcome.UNKNOWN:
            return f"Verdict.unknown({self.reason!r})"
        return "NO_MATCH"


NO_MATCH = Verdict(Outcome.NO_MATCH)


def all_of(verdicts: Iterable[Verdict]) -> Verdict:
    """``and``: no-match if any child is no-match, else unknown if any is, else match (merged)."""
    evidence: dict[str, Any] = {}
    reasons: list[str] = []
    for verdict in verdicts:
        if verdict.outcome is Outcome.NO_MATCH:
            return NO_MATCH
        if verdict.outcome is Outcome.UNKNOWN:
            reasons.append(verdict.reason or "unknown")
        else:
            evidence.update(verdict.evidence)
    if reasons:
        return Verdict.unknown("; ".join(reasons))
    return Verdict(Outcome.MATCH, evidence)


def any_of(verdicts: Iterable[Verdict]) -> Verdict:
    """``or``: match if any child matches, else unknown if any is unknown, else no-match."""
    reasons: list[str] = []
    for verdict in verdicts:
        if verdict.outcome is Outcome.MATCH:
            return verdict
        if verdict.outcome is Outcome.UNKNOWN:
            reasons.append(verdict.reason or "unknown")
    if reasons:
        return Verdict.unknown("; ".join(reasons))
    return NO_MATCH


def negate(verdict: Verdict, what: str) -> Verdict:
    """``not``: swaps match and no-match; unknown stays unknown."""
    if verdict.outcome is Outcome.MATCH:
        return NO_MATCH
    if verdict.outcome is Outcome.NO_MATCH:
        return Verdict.match(**{"not": what})
    return verdict

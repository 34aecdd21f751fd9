"""Severity of an advisory: CVSS v3.x base score from its vector, or the feed's own label.

The base score is computed here (CVSS 3.1 specification, section 7) rather than trusted from
the feed: OSV carries only the vector string, and a vector is easy to validate while a bare
number is not. CVSS v4 vectors are scored only when the optional ``cvss`` package is
installed; otherwise the advisory falls back to ``database_specific.severity``.
"""

from __future__ import annotations

import math
from typing import Any

#: Qualitative ratings, lowest first (CVSS 3.1 table 14, plus "none" for a 0.0 score).
RATINGS = ("none", "low", "medium", "high", "critical")
RANK = {name: i for i, name in enumerate(RATINGS)}

# Labels distributions put in database_specific / ecosystem_specific, mapped to ratings.
_LABELS = {
    "negligible": "low",
    "unimportant": "low",
    "low": "low",
    "moderate": "medium",
    "medium": "medium",
    "important": "high",
    "high": "high",
    "critical": "critical",
    "none": "none",
}

_WEIGHTS: dict[str, dict[str, float]] = {
    "AV": {"N": 0.85, "A": 0.62, "L": 0.55, "P": 0.2},
    "AC": {"L": 0.77, "H": 0.44},
    "UI": {"N": 0.85, "R": 0.62},
    "C": {"H": 0.56, "L": 0.22, "N": 0.0},
    "I": {"H": 0.56, "L": 0.22, "N": 0.0},
    "A": {"H": 0.56, "L": 0.22, "N": 0.0},
}
_PR = {"U": {"N": 0.85, "L": 0.62, "H": 0.27}, "C": {"N": 0.85, "L": 0.68, "H": 0.5}}
_BASE = ("AV", "AC", "PR", "UI", "S", "C", "I", "A")


def _roundup_31(value: float) -> float:
    """CVSS 3.1 Roundup: smallest one-decimal number >= value, free of float noise."""
    scaled = round(value * 100_000)
    if scaled % 10_000 == 0:
        return scaled / 100_000
    return (math.floor(scaled / 10_000) + 1) / 10.0


def cvss3_base_score(vector: str) -> float:
    """Base score of a ``CVSS:3.0/…`` or ``CVSS:3.1/…`` vector.

    Raises ValueError on a malformed vector (missing or repeated base metric, unknown value).
    Temporal and environmental metrics may be present; they do not change the base score.
    """
    prefix, _, rest = vector.strip().partition("/")
    if prefix not in ("CVSS:3.0", "CVSS:3.1") or not rest:
        raise ValueError(f"not a CVSS v3 vector: {vector!r}")
    metrics: dict[str, str] = {}
    for part in rest.split("/"):
        key, sep, value = part.partition(":")
        if not sep or key in metrics:
            raise ValueError(f"malformed CVSS v3 vector {vector!r} at {part!r}")
        metrics[key] = value
    missing = [m for m in _BASE if m not in metrics]
    if missing:
        raise ValueError(f"CVSS v3 vector {vector!r} lacks {', '.join(missing)}")
    scope = metrics["S"]
    if scope not in _PR:
        raise ValueError(f"CVSS v3 vector {vector!r}: scope must be U or C")
    try:
        w = {m: _WEIGHTS[m][metrics[m]] for m in _WEIGHTS}
        pr = _PR[scope][metrics["PR"]]
    except KeyError as exc:
        raise ValueError(f"CVSS v3 vector {vector!r}: bad value for {exc.args[0]!r}") from None
    iss = 1 - (1 - w["C"]) * (1 - w["I"]) * (1 - w["A"])
    changed = 7.52 * (iss - 0.029) - 3.25 * (iss - 0.02) ** 15
    impact = 6.42 * iss if scope == "U" else changed
    exploitability = 8.22 * w["AV"] * w["AC"] * pr * w["UI"]
    if impact <= 0:
        return 0.0
    total = impact + exploitability if scope == "U" else 1.08 * (impact + exploitability)
    if prefix == "CVSS:3.0":
        return math.ceil(min(total, 10.0) * 10 - 1e-9) / 10.0
    return _roundup_31(min(total, 10.0))


def cvss4_base_score(vector: str) -> float | None:
    """Score of a CVSS v4 vector through the optional ``cvss`` package, else None."""
    try:
        from cvss import CVSS4  # type: ignore[import-not-found]
    except ImportError:
        return None
    try:
        return float(CVSS4(vector).base_score)
    except Exception:  # a third-party parser on hostile input: no score
        return None


def rating(score: float) -> str:
    """CVSS qualitative rating of a 0.0-10.0 score."""
    if score <= 0.0:
        return "none"
    if score < 4.0:
        return "low"
    if score < 7.0:
        return "medium"
    if score < 9.0:
        return "high"
    return "critical"


def label(text: Any) -> str | None:
    """A distribution's severity word (Debian, Ubuntu, Red Hat, GHSA) as a rating, or None."""
    if not isinstance(text, str):
        return None
    return _LABELS.get(text.strip().lower())


def assess(
    severity: list[dict[str, Any]], database_specific: Any
) -> tuple[str | None, float | None]:
    """(rating, score) of one OSV record or affected entry: the highest CVSS score it carries,
    else the qualitative label (``Ubuntu`` severity entries, ``database_specific.severity``)."""
    best: float | None = None
    labels: list[str] = []
    for entry in severity:
        kind, score = entry.get("type"), entry.get("score")
        if not isinstance(score, str):
            continue
        value: float | None = None
        if kind == "CVSS_V3":
            try:
                value = cvss3_base_score(score)
            except ValueError:
                value = None
        elif kind == "CVSS_V4":
            value = cvss4_base_score(score)
        elif (word := label(score)) is not None:
            labels.append(word)
        if value is not None and (best is None or value > best):
            best = value
    if best is not None:
        return rating(best), best
    if isinstance(database_specific, dict):
        word = label(database_specific.get("severity"))
        if word is not None:
            labels.append(word)
    if labels:
        return max(labels, key=RANK.__getitem__), None
    return None, None

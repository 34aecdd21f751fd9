"""CVSS v3 base scores from vectors, and the rating an advisory gets."""

from __future__ import annotations

import pytest

from vmwarden.vulns import cvss3_base_score, rating
from vmwarden.vulns.severity import assess

V = "CVSS:3.1/"


@pytest.mark.parametrize(
    ("vector", "score", "level"),
    [
        (V + "AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8, "critical"),
        (V + "AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H", 10.0, "critical"),
        (V + "AV:N/AC:L/PR:L/UI:N/S:C/C:H/I:H/A:H", 9.9, "critical"),
        (V + "AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N", 7.5, "high"),
        (V + "AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H", 7.8, "high"),
        (V + "AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", 6.1, "medium"),
        (V + "AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:N", 5.9, "medium"),
        (V + "AV:L/AC:L/PR:L/UI:N/S:U/C:N/I:N/A:H", 5.5, "medium"),
        (V + "AV:P/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N", 1.6, "low"),
        (V + "AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N", 0.0, "none"),
        ("CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8, "critical"),
        (V + "AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N/E:U/RL:O", 7.5, "high"),  # temporal ignored
    ],
)
def test_cvss3_base_score(vector, score, level):
    assert cvss3_base_score(vector) == score
    assert rating(score) == level


@pytest.mark.parametrize(
    "vector",
    [
        "CVSS:2.0/AV:N/AC:L/Au:N/C:P/I:P/A:P",
        "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H",  # A missing
        "CVSS:3.1/AV:X/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
        "CVSS:3.1/AV:N/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
        "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:Q/C:H/I:H/A:H",
        "CVSS:3.1/garbage",
        "",
    ],
)
def test_malformed_vectors_raise_value_error(vector):
    with pytest.raises(ValueError):
        cvss3_base_score(vector)


def test_assess_prefers_the_highest_cvss_then_labels():
    vectors = [
        {"type": "CVSS_V3", "score": V + "AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N"},
        {"type": "CVSS_V3", "score": V + "AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"},
        {"type": "CVSS_V3", "score": "not a vector"},
    ]
    assert assess(vectors, None) == ("critical", 9.8)
    assert assess([{"type": "Ubuntu", "score": "medium"}], None) == ("medium", None)
    assert assess([], {"severity": "Important"}) == ("high", None)
    assert assess([], {"severity": "MODERATE"}) == ("medium", None)
    assert assess([], {"severity": 7}) == (None, None)
    assert assess([], None) == (None, None)

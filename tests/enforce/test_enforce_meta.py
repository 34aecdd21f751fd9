"""Every executor is tested here, and every action the policy can name can be executed."""

from __future__ import annotations

import re
from pathlib import Path

from vmwarden.enforce import executors
from vmwarden.policy.actions import actions

HERE = Path(__file__).parent


def test_every_policy_action_has_an_executor_and_vice_versa():
    assert set(actions.names()) == set(executors.names())


def test_every_executor_has_a_test_that_runs_it():
    sources = "\n".join(
        p.read_text() for p in HERE.glob("test_*.py") if p.name != Path(__file__).name
    )
    untested = [
        name
        for name in executors.names()
        if not re.search(rf"[\"']{re.escape(name)}[\"']", sources)
    ]
    assert untested == []

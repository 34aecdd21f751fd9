"""Meta-tests (Cloud Custodian style) over every registered filter and action."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from tests.policy.conftest import BASE_POLICY
from vmwarden.errors import PolicyError
from vmwarden.policy import actions, filters, parse_policy
from vmwarden.policy.registry import Registry, example_of

HERE = Path(__file__).parent
ENTRIES = [("filter", n, c) for n, c in filters.items()] + [
    ("action", n, c) for n, c in actions.items()
]
IDS = [f"{kind}:{name}" for kind, name, _ in ENTRIES]


def test_registries_are_exported():
    assert isinstance(filters, Registry) and isinstance(actions, Registry)
    assert {"quarantine", "pause", "shutdown", "snapshot", "notify", "tag"} == set(actions)


@pytest.mark.parametrize(("kind", "name", "cls"), ENTRIES, ids=IDS)
def test_params_reject_unknown_keys(kind, name, cls):
    assert cls.Params.model_config.get("extra") == "forbid"
    with pytest.raises(ValidationError) as info:
        cls.Params.model_validate({"no_such_key": 1})
    assert any(e["type"] == "extra_forbidden" for e in info.value.errors())


@pytest.mark.parametrize(("kind", "name", "cls"), ENTRIES, ids=IDS)
def test_docstring_example_loads(kind, name, cls):
    example = example_of(cls)
    assert example, f"{kind} {name!r} has no 'Example:' block in its docstring"
    assert name in example
    text = BASE_POLICY + "rules:\n" + textwrap.indent(example, "  ") + "\n"
    policy = parse_policy(text, source=f"{name}-example.yaml")
    used = [a.name for r in policy.rules for a in r.actions]
    assert kind == "filter" or name in used


@pytest.mark.parametrize(("kind", "name", "cls"), ENTRIES, ids=IDS)
def test_declares_resources(kind, name, cls):
    assert cls.resources and set(cls.resources) <= {"vm", "image", "host"}


def test_every_filter_has_a_test():
    """Each filter has a test function named for it: ``test_<name with underscores>...``."""
    tests = "".join(p.read_text() for p in HERE.glob("test_*.py"))
    missing = [n for n in filters if f"def test_{n.replace('-', '_')}" not in tests]
    assert not missing, f"filters without a test named for them: {missing}"


def test_registering_a_duplicate_name_raises():
    registry: Registry[type] = Registry("filter")

    @registry.register("x")
    class X:
        pass

    with pytest.raises(PolicyError, match="already registered"):
        registry.register("x")(type("Y", (), {}))
    assert registry.get("x") is X
    with pytest.raises(PolicyError, match="already registered"):
        filters.register("dormant")(type("Z", (), {}))

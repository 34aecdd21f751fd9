"""Mutated policies never crash the loader: they load, or raise PolicyError naming a line."""

from __future__ import annotations

import copy
import random
from typing import Any

import yaml

from tests.policy.conftest import APPROVED
from vmwarden.errors import PolicyError
from vmwarden.policy import parse_policy

SEED_POLICY = f"""
version: 1
templates: [{{name: base, digest: {APPROVED}}}]
zones:
  pci: {{networks: [pci], classifications: [pci]}}
quarantine: {{network: quarantine}}
gate: {{deny: [not-approved-template], hold: [{{type: dormant, days: 30}}], unreachable: allow}}
notify: [{{type: webhook, url: "http://x/hook"}}, {{type: ocsf, path: /tmp/o.jsonl}}]
rules:
  - name: a
    resource: vm
    severity: high
    filters:
      - or: [unregistered, {{not: {{type: value, key: meta.owner, op: in, value: [x]}}}}]
      - {{type: outside-zone, zones: [pci]}}
    actions: [quarantine, {{type: tag, key: k, value: v}}, notify]
"""
JUNK: list[Any] = [
    None,
    0,
    -1,
    3.5,
    True,
    "",
    "x",
    "and",
    "not",
    [],
    [None],
    {},
    {"type": 1},
    {"and": 5},
    {"not": []},
    {"type": "value"},
    ["dormant"],
    {"x": {"y": []}},
]


def paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            found += paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            found += paths(v, (*prefix, i))
    return found


def test_mutations_load_or_raise_policy_error():
    rng = random.Random(1234)
    base = yaml.safe_load(SEED_POLICY)
    parse_policy(SEED_POLICY)
    targets = [p for p in paths(base) if p]
    for _ in range(400):
        doc = yaml.safe_load(SEED_POLICY)
        for path in rng.sample(targets, rng.randint(1, 3)):
            node = doc
            try:
                for part in path[:-1]:
                    node = node[part]
                node[path[-1]] = copy.deepcopy(rng.choice(JUNK))
            except (KeyError, IndexError, TypeError):
                continue
        text = yaml.safe_dump(doc)
        try:
            parse_policy(text, "fuzz.yaml")
        except PolicyError as exc:
            assert all(line.startswith("fuzz.yaml:") for line in str(exc).splitlines()), exc

"""Policy: schema, loader, filter and action registries, evaluation (facts in, findings out).

``filters`` and ``actions`` below are the registries, not the modules of the same names: the
subpackage ``vmwarden.policy.filters`` is imported first (registering every built-in filter),
then the name is bound to the registry.
"""

from vmwarden.policy import actions as _actions_module
from vmwarden.policy import filters as _filters_package
from vmwarden.policy.actions import actions
from vmwarden.policy.evaluate import evaluate
from vmwarden.policy.filters.base import filters
from vmwarden.policy.gate import Admission, admit
from vmwarden.policy.loader import load_policy, parse_policy
from vmwarden.policy.problems import PolicyValidationError, Problem
from vmwarden.policy.rules import ActionSpec, Gate, Policy, Rule
from vmwarden.policy.verdict import NO_MATCH, Outcome, Verdict

del _actions_module, _filters_package

__all__ = [
    "NO_MATCH",
    "ActionSpec",
    "Admission",
    "Gate",
    "Outcome",
    "Policy",
    "PolicyValidationError",
    "Problem",
    "Rule",
    "Verdict",
    "actions",
    "admit",
    "evaluate",
    "filters",
    "load_policy",
    "parse_policy",
]

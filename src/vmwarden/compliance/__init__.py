"""Compliance reports: vmwarden's rules, findings and scans mapped to framework controls.

Sits after ``policy`` in the layer order (it reads the policy's rules and the store's facts)
and before ``cli``, which only renders what :func:`evaluate` returns.
"""

from vmwarden.compliance.evaluate import (
    ComplianceReport,
    ControlResult,
    Evidence,
    HookFacts,
    evaluate,
    gather,
)
from vmwarden.compliance.mapping import (
    Control,
    Framework,
    MappingError,
    available_frameworks,
    load_framework,
    parse_framework,
)

__all__ = [
    "ComplianceReport",
    "Control",
    "ControlResult",
    "Evidence",
    "Framework",
    "HookFacts",
    "MappingError",
    "available_frameworks",
    "evaluate",
    "gather",
    "load_framework",
    "parse_framework",
]

"""Every built-in filter, one module per concept; importing this package registers them."""

from vmwarden.policy.filters import (
    colocation,
    combinators,
    dormancy,
    mac,
    package,
    registration,
    template,
    value,
    zone,
)
from vmwarden.policy.filters.base import CheckEnv, Filter, filters

__all__ = [
    "CheckEnv",
    "Filter",
    "colocation",
    "combinators",
    "dormancy",
    "filters",
    "mac",
    "package",
    "registration",
    "template",
    "value",
    "zone",
]

"""Every built-in filter, one module per concept; importing this package registers them."""

from vmwarden.policy.filters import (
    accounts,
    benchmark,
    clones,
    colocation,
    combinators,
    dormancy,
    images,
    inspected,
    mac,
    package,
    registration,
    services,
    template,
    value,
    vulnerable,
    zone,
)
from vmwarden.policy.filters.base import CheckEnv, Filter, filters

__all__ = [
    "CheckEnv",
    "Filter",
    "accounts",
    "benchmark",
    "clones",
    "colocation",
    "combinators",
    "dormancy",
    "filters",
    "images",
    "inspected",
    "mac",
    "package",
    "registration",
    "services",
    "template",
    "value",
    "vulnerable",
    "zone",
]

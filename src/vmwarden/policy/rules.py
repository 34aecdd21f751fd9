"""The loaded policy: validated, with filters built into trees, ready to evaluate many times."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vmwarden.model import Severity

if TYPE_CHECKING:
    from vmwarden.policy.filters.base import Filter
    from vmwarden.policy.schema import Notifier, Quarantine, StrictModel, Template, Zone


@dataclass(frozen=True, slots=True)
class ActionSpec:
    """One action of a rule: its registry name and validated params."""

    name: str
    params: StrictModel


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    resource: str  # vm | image | host
    severity: Severity
    filter: Filter  # the rule's filters as one tree (an implicit ``and``)
    actions: tuple[ActionSpec, ...] = ()
    description: str | None = None
    remediation: str | None = None  # what the operator should do; summaries group by it

    @property
    def action_names(self) -> list[str]:
        return [a.name for a in self.actions]

    def action_specs(self) -> list[tuple[str, dict[str, Any]]]:
        """(name, params) of each action, params as a plain dict, for the enforce layer."""
        return [(a.name, a.params.model_dump()) for a in self.actions]


@dataclass(frozen=True, slots=True)
class Gate:
    """Power-on admission. Each entry of ``deny``/``hold`` is one condition: any firing one
    (match or unknown) denies or holds the VM."""

    deny: tuple[Filter, ...] = ()
    hold: tuple[Filter, ...] = ()
    unreachable: str = "allow"  # what the libvirt hook does when `watch` cannot be reached


@dataclass(frozen=True, slots=True)
class Policy:
    version: int
    source: str
    rules: tuple[Rule, ...] = ()
    templates: tuple[Template, ...] = ()
    zones: dict[str, Zone] = field(default_factory=dict)
    quarantine: Quarantine | None = None
    gate: Gate = field(default_factory=Gate)
    notify: tuple[Notifier, ...] = ()
    vulns: Path | None = None

    def catalog(self) -> dict[str, str]:
        """Approved template identities → template names: image digests (``sha256:<hex>``,
        lower-case) and EC2 AMI ids (``ami-…``; the two forms cannot collide)."""
        return {(t.digest or t.aws_image or ""): t.name for t in self.templates}

    def rule(self, name: str) -> Rule:
        """The rule a finding names (``Finding.rule``), e.g. to read its actions' params."""
        for rule in self.rules:
            if rule.name == name:
                return rule
        raise KeyError(name)

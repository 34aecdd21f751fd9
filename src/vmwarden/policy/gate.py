"""Power-on admission: should a VM that is starting be allowed, held in quarantine, or denied?

Pure like the rest of the policy layer; the engine's ``watch`` and its libvirt hook call it.
Each entry of ``gate.deny`` / ``gate.hold`` is one condition, and a condition that fires —
matches, or is unknown — decides: unknown never admits a VM it could not judge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from vmwarden.policy.context import Context

if TYPE_CHECKING:
    from vmwarden.model import VM, Estate
    from vmwarden.policy.rules import Policy

Decision = Literal["allow", "hold", "deny"]


@dataclass(frozen=True, slots=True)
class Admission:
    decision: Decision
    reasons: list[dict[str, Any]] = field(default_factory=list)  # {"filter": name, **evidence}


def admit(policy: Policy, vm: VM, estate: Estate) -> Admission:
    """Judge ``vm`` (which ``estate`` should include, for cross-VM filters) at power-on."""
    ctx = Context(estate.judged(), policy)
    vm = vm.judged()  # a held NIC is judged where it was before vmwarden's quarantine
    for decision, conditions in (("deny", policy.gate.deny), ("hold", policy.gate.hold)):
        reasons = []
        for condition in conditions:
            condition.prepare(ctx)
            verdict = condition.match(vm, ctx)
            if verdict.fires:
                reasons.append({"filter": condition.type_name, **verdict.finding_evidence()})
        if reasons:
            return Admission(decision, reasons)  # type: ignore[arg-type]
    return Admission("allow")

"""What every action needs to run: the store (journal), connections, policy bits, the actor."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from vmwarden.enforce.journal import journal_begin
from vmwarden.enforce.quarantine import QuarantineSpec
from vmwarden.errors import EnforceError
from vmwarden.model import VM, Finding

# Sends one alert and returns one (receiver, ok, error) per receiver. Built by the engine from
# the notify layer, which sits below enforce and so cannot be imported here.
Notifier = Callable[[VM, Finding | None, str | None], list[tuple[str, bool, str | None]]]


@dataclass
class EnforceContext:
    store: Any
    connectors: Mapping[str, Any]
    actor: str
    quarantine: QuarantineSpec | None = None
    notifier: Notifier | None = None
    vms: Mapping[str, VM] = field(default_factory=dict)

    def conn(self, uri: str) -> Any:
        try:
            return self.connectors[uri]
        except KeyError:
            raise EnforceError(
                f"no open connection to {uri}", hint=f"pass -c {uri} to reach this VM's host"
            ) from None

    def journal_simple(
        self, action: str, vm: VM, *, reason: str, rule: str | None, changes: dict[str, Any]
    ) -> int:
        return journal_begin(
            self.store, action, vm, actor=self.actor, reason=reason, rule=rule, changes=changes
        )

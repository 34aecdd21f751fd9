"""Action declarations: name, ``Params``, which resources, and what each means.

Execution lives in the enforce layer; the policy layer only validates that a rule's actions
exist, take valid params and suit the rule's resource, before anything touches a hypervisor.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from vmwarden.policy.registry import Registry
from vmwarden.policy.schema import NoParams, StrictModel

if TYPE_CHECKING:
    from vmwarden.policy.filters.base import CheckEnv
    from vmwarden.policy.source import PathT


class Action:
    """Declaration of one action. ``needs`` names the top-level policy section it requires."""

    type_name: ClassVar[str] = ""
    resources: ClassVar[tuple[str, ...]] = ("vm",)
    Params: ClassVar[type[StrictModel]] = NoParams
    needs: ClassVar[str | None] = None

    @classmethod
    def check(cls, params: StrictModel, env: CheckEnv) -> Iterable[tuple[PathT, str]]:
        """Load-time checks that need the rest of the policy; yields (sub-path, message)."""
        return ()


actions: Registry[type[Action]] = Registry("action")


@actions.register("quarantine")
class Quarantine(Action):
    """Moves every NIC to the ``quarantine:`` network (link down unless ``link_down: false``).

    ``vmwarden release`` restores exactly what quarantine changed.

    Example:
        - name: isolate-rogue
          resource: vm
          severity: high
          filters: [not-approved-template]
          actions: [quarantine]
    """

    needs = "quarantine"


@actions.register("pause")
class Pause(Action):
    """Suspends the VM's vCPUs (memory kept), stopping it without losing state for forensics.

    Example:
        - name: pause-miner
          resource: vm
          severity: critical
          filters: [{type: value, key: meta.tags.miner, op: eq, value: "yes"}]
          actions: [pause]
    """


@actions.register("shutdown")
class Shutdown(Action):
    """Asks the guest to shut down (ACPI); a VM that is not running is left alone.

    Example:
        - name: stop-unregistered
          resource: vm
          severity: medium
          filters: [unregistered]
          actions: [shutdown]
    """


@actions.register("snapshot")
class Snapshot(Action):
    """Takes a libvirt snapshot before other actions change the VM (evidence preservation).

    Example:
        - name: keep-evidence
          resource: vm
          severity: high
          filters: [duplicate-mac]
          actions: [snapshot]
    """


@actions.register("notify")
class Notify(Action):
    """Sends the finding to every receiver under ``notify:`` (webhook, syslog, smtp, ocsf).

    Example:
        - name: tell-secops
          resource: vm
          severity: medium
          filters: [mixed-classification-on-host]
          actions: [notify]
    """

    resources = ("vm", "image", "host")
    needs = "notify"


class TagParams(StrictModel):
    key: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    value: str


@actions.register("tag")
class Tag(Action):
    """Writes ``key=value`` into the VM's vmwarden metadata tags (``meta.tags``).

    Example:
        - name: mark-dormant
          resource: vm
          severity: info
          filters: [{type: dormant, days: 90}]
          actions: [{type: tag, key: dormant, value: "yes"}]
    """

    Params = TagParams

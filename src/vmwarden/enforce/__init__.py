"""Runs actions through connectors, journaling every step durably; release undoes quarantine."""

from vmwarden.enforce.actions import ActionRequest, executors
from vmwarden.enforce.context import EnforceContext
from vmwarden.enforce.held import mark_held, mark_vm_held
from vmwarden.enforce.quarantine import Quarantiner, QuarantineSpec
from vmwarden.enforce.runner import PlannedAction, execute, plan, repair

__all__ = [
    "ActionRequest",
    "EnforceContext",
    "PlannedAction",
    "QuarantineSpec",
    "Quarantiner",
    "execute",
    "executors",
    "mark_held",
    "mark_vm_held",
    "plan",
    "repair",
]

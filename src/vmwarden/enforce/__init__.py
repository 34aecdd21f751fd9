"""Runs actions through connectors, journaling every step durably; release undoes quarantine."""

from vmwarden.enforce.actions import ActionRequest, executors
from vmwarden.enforce.context import EnforceContext
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
    "plan",
    "repair",
]

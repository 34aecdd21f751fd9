"""What someone changed on a held VM's NICs during quarantine, so release never undoes it silently.

An admin who moves a quarantined NIC's persistent config to the right network means it to
stay there; release putting back the recorded original would silently undo the fix. A change
is a NIC scope (live or persistent) that is neither what quarantine set nor the recorded
original, found either now (``current``) or earlier, when a reconcile re-isolated the drifted
NIC and kept the drifted XML in the entry (``drift``, see ``Quarantiner._reconcile``).

``release`` refuses while there are changes (nothing is touched, the VM stays held) unless
told how to resolve them: ``force`` puts back the originals over them, ``keep_changes`` keeps
each changed scope (raising the link quarantine took down) — and a running VM whose persistent
NIC was fixed gets the fix live too, instead of the old network until its next boot.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vmwarden.connectors.libvirt.nicxml import quarantine_interface
from vmwarden.enforce.nics import describe, link_state, same_interface, with_link_of
from vmwarden.errors import EnforceError

SCOPES = ("live", "config")
_SCOPE_NAME = {"live": "live", "config": "persistent"}


@dataclass(frozen=True, slots=True)
class NicChange:
    """One NIC scope someone changed while vmwarden held it."""

    mac: str
    scope: str  # live | config
    now: str  # the scope's XML as changed (current, or as found before re-isolation)
    quarantined: str  # what quarantine set
    before: str  # the recorded pre-quarantine XML
    reisolated: bool = False  # a reconcile moved it back to quarantine since

    def describe(self) -> str:
        how = "was changed to" if self.reisolated else "is now"
        tail = " (vmwarden re-isolated it since)" if self.reisolated else ""
        return (
            f"NIC {self.mac} {_SCOPE_NAME[self.scope]}: {how} {describe(self.now)}{tail}; "
            f"quarantine set {describe(self.quarantined)}; release would put back "
            f"{describe(self.before)}"
        )


class ReleaseConflict(EnforceError):
    """Release would overwrite what someone changed during quarantine; nothing was done."""

    def __init__(self, name: str, changes: list[NicChange]) -> None:
        super().__init__(
            f"{name}: {len(changes)} NIC setting(s) changed during quarantine; release would "
            "overwrite them, so nothing was changed (the VM stays quarantined): "
            + "; ".join(c.describe() for c in changes),
            hint="check the changes; --keep-changes keeps them (and raises the link quarantine "
            "took down), --force puts back the pre-quarantine NICs over them",
        )
        self.changes = changes


def original_of(nic: Mapping[str, Any], scope: str) -> str | None:
    """The recorded pre-quarantine XML of one scope (a VM started after quarantine has no
    live original: its original is the persistent one)."""
    return nic.get(f"{scope}_before") or nic.get("config_before") or nic.get("live_before")


def quarantined_xml(xml: str, entry: Mapping[str, Any]) -> str:
    """What quarantine makes of ``xml`` under this entry's network and link setting."""
    return quarantine_interface(xml, entry["network"], link_down=entry.get("link_down", True))


def is_change(xml: str, before: str, entry: Mapping[str, Any]) -> bool:
    """Whether ``xml`` is neither the pre-quarantine NIC nor what quarantine made of it."""
    return not same_interface(xml, before) and not same_interface(
        xml, quarantined_xml(before, entry)
    )


def changes_since(entry: Mapping[str, Any], current: Mapping[str, Any]) -> list[NicChange]:
    """Every NIC scope of the quarantine ``entry`` (its ``changes``) someone changed: as it is
    now (``current``: MAC → NIC snapshot), or as a reconcile found it before re-isolating."""
    found = []
    for nic in entry.get("nics") or ():
        snap = current.get(nic["mac"])
        for scope in SCOPES:
            before = original_of(nic, scope)
            if before is None:
                continue
            xml = None if snap is None else getattr(snap, f"{scope}_xml")
            target = quarantined_xml(before, entry)
            if xml is not None and is_change(xml, before, entry):
                found.append(NicChange(nic["mac"], scope, xml, target, before))
            elif (drifted := (nic.get("drift") or {}).get(scope)) is not None:
                found.append(NicChange(nic["mac"], scope, drifted, target, before, True))
    return found


def kept(
    changes: list[NicChange], entry: Mapping[str, Any], current: Mapping[str, Any]
) -> dict[str, dict[str, str]]:
    """For ``keep_changes``: MAC → {scope: XML to leave in place}; scopes not listed are
    restored to their originals. The link quarantine took down is raised to the original's;
    a running VM's live NIC follows a persistent fix nobody applied live."""
    link_down = entry.get("link_down", True)
    plan: dict[str, dict[str, str]] = {}
    for change in changes:
        xml = change.now
        if link_down and link_state(xml) == "down":
            xml = with_link_of(xml, change.before)
        plan.setdefault(change.mac, {})[change.scope] = xml
    for mac, scopes in plan.items():
        snap = current.get(mac)
        if "config" in scopes and "live" not in scopes and snap is not None and snap.live_xml:
            scopes["live"] = scopes["config"]
    return plan

"""Release never undoes silently what someone changed on a held VM's NICs during quarantine.

An admin who moves a quarantined NIC's persistent config to the right network means it to
stay there; release putting back the recorded original would silently undo the fix. The
connector finds such changes (``Connector.changes_since``: a NIC setting that is neither what
quarantine set nor the recorded original, now or as a reconcile found it before re-isolating
it) and describes them neutrally (``NicChange``). ``release`` then refuses (nothing is
touched, the VM stays held) unless told how to resolve them: ``force`` puts back the
originals over them, ``keep_changes`` keeps each changed setting (the connector raises the
link quarantine took down, and applies a persistent fix to the running VM too).
"""

from __future__ import annotations

from vmwarden.errors import EnforceError
from vmwarden.model.isolation import NicChange

__all__ = ["NicChange", "ReleaseConflict"]


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

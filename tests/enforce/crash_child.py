"""Runs one enforcement step in its own process, so ``VMWARDEN_FAULT`` can kill it midway.

``python -m tests.enforce.crash_child quarantine|release FLEET_FILE DB_URL VM_ID``
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.enforce.enforce_fleet import PersistingConnector
from vmwarden.enforce import Quarantiner, QuarantineSpec
from vmwarden.store import Store


def main(op: str, fleet: str, db: str, vm_id: str) -> int:
    with Store.open(db) as store, PersistingConnector(Path(fleet)) as conn:
        q = Quarantiner(store, "crashing-worker")
        if op == "quarantine":
            rec = q.quarantine(
                conn, conn.lookup(vm_id), QuarantineSpec("quarantine"), reason="rogue", rule="r"
            )
        else:
            rec = q.release(conn, vm_id, reason="fixed")
    print(rec.status)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))

"""Quarantine one VM and die right after the first journaled step that changed the VM.

``python -m tests.connectors.conformance.crash_child URI DB_URL VM_ID SPEC_JSON``
(``SPEC_JSON``: the quarantine spec as a journal entry holds it, ``QuarantineSpec.to_journal``)

Platform-neutral: whatever the connector's steps are called, the process exits
(``os._exit``, no cleanup, as a SIGKILL would) once a journaled step has changed what
``isolation_records`` reports (steps with nothing to do, e.g. the live side of a shut-off
VM, do not count), so the store holds a pending quarantine that is half done.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any

from vmwarden.connectors.base import open_connector
from vmwarden.enforce import Quarantiner, QuarantineSpec
from vmwarden.enforce.faults import FAULT_EXIT_CODE
from vmwarden.store import Store


class DiesAfterFirstStep:
    """The real connector; its ``isolate`` dies once a journaled step changed the VM."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def isolate(self, vm_id: str, records: Any, spec: Any, *, progress: Callable[[str], None],
                on_live: Any = None) -> list[str]:  # fmt: skip
        untouched = self._conn.isolation_records(vm_id)

        def step(name: str) -> None:
            progress(name)  # journaled by the Quarantiner
            if self._conn.isolation_records(vm_id) != untouched:
                os._exit(FAULT_EXIT_CODE)

        return self._conn.isolate(vm_id, records, spec, progress=step, on_live=on_live)


def main(uri: str, db: str, vm_id: str, spec_json: str) -> int:
    spec = QuarantineSpec.from_journal(json.loads(spec_json))
    with Store.open(db) as store, open_connector(uri) as conn:
        crashing = DiesAfterFirstStep(conn)
        Quarantiner(store, "crashing-worker").quarantine(
            crashing, conn.lookup(vm_id), spec, reason="rogue", rule="r"
        )
    return 0  # no step was taken: the test fails on the exit code


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))

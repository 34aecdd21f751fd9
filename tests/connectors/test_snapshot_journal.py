"""The snapshot journal both EC2 and vSphere scan snapshots are kept in (never leaked)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from vmwarden.connectors.snapshot_journal import SnapshotJournal, alive


def test_only_a_dead_process_entries_of_the_scope_are_abandoned(tmp_path: Path) -> None:
    journal = SnapshotJournal(tmp_path / "j.json", "region")
    mine = journal.add("eu-west-1", [{"volume": "vol-1"}, {"volume": "vol-2"}])
    other_scope = journal.add("us-east-1", [{"volume": "vol-3"}])
    journal.update({mine[0]: {"snapshot": "snap-1"}})
    entries = journal.entries()
    assert entries[mine[0]]["snapshot"] == "snap-1" and entries[mine[0]]["volume"] == "vol-1"
    assert journal.abandoned("eu-west-1") == {}  # this process is alive

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    pid = int(dead.stdout)
    assert not alive(pid)
    with journal._locked() as raw:  # as a killed sweep of another process left it
        for token in (*mine, *other_scope):
            raw[token]["pid"] = pid
    assert set(journal.abandoned("eu-west-1")) == set(mine)
    journal.forget(mine)
    assert set(journal.entries()) == set(other_scope)


def test_a_torn_file_is_read_as_empty_and_rewritten_whole(tmp_path: Path) -> None:
    path = tmp_path / "j.json"
    path.write_text('{"half": ')
    journal = SnapshotJournal(path, "vcenter")
    assert journal.entries() == {}
    (token,) = journal.add("vc1", [{"vm": "vm-42"}])
    assert SnapshotJournal(path, "vcenter").entries()[token]["vm"] == "vm-42"

"""Cloud VMs have no hypervisor host: output names them alone, never '/name' or 'on  '."""

from __future__ import annotations

import io

from rich.console import Console

from vmwarden.cli.render import render_table
from vmwarden.engine.result import ScanResult
from vmwarden.model import ActionRecord, Finding, Severity


def test_a_hostless_vm_is_named_alone_in_the_table_and_problems() -> None:
    finding = Finding(
        rule="unapproved-ami",
        resource="vm",
        id="i-0abc",
        name="rogue",
        host="",
        severity=Severity.HIGH,
    )
    failed = ActionRecord(
        journal_id=1,
        action="quarantine",
        id="i-0abc",
        name="rogue",
        host="",
        uri="aws://us-east-1",
        status="failed",
        actor="ci",
        error="not supported",
    )
    result = ScanResult(vms=[], images=[], findings=[finding], actions=[failed], hosts=[])
    console = Console(file=io.StringIO(), width=120)
    render_table(result, console)
    shown = console.file.getvalue()
    assert "rogue" in shown and "/rogue" not in shown
    assert result.problems() == ["quarantine of VM rogue failed: not supported"]

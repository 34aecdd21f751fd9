"""Ctrl-C during ``scan --enforce`` on real QEMU VMs leaves no VM half quarantined (#10.7).

The test driver cannot change a running VM's NICs, so "live and persistent agree" is only
provable here: real running VMs, each NIC moved live *and* in the definition by quarantine.
SIGINT is sent as soon as the first quarantine is journaled (in the middle of that VM); then
every VM's live and persistent NICs must be on the same network with the same link state:
the ones done both isolated, the others both untouched.

The policy matches only this test's VMs (``vmw-f-cc-*``): the libvirtd is shared.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import libvirt
import pytest

from tests.integration.conftest import ISOLATED, URI, RealVMs, both, make_base
from vmwarden.store import Store

pytestmark = pytest.mark.libvirtd

COUNT = 8
POLICY = """\
version: 1
quarantine: {network: quarantine, link_down: true}
rules:
  - name: interrupt-test
    resource: vm
    severity: high
    filters: [{type: value, key: name, op: regex, value: "^vmw-f-cc-"}]
    actions: [quarantine]
"""


def test_ctrl_c_leaves_live_and_persistent_nics_in_step(
    real_vms: RealVMs, system_conn: libvirt.virConnect, image_dir: Path, tmp_path: Path
) -> None:
    doms = {}
    for i in range(COUNT):
        name = f"vmw-f-cc-{i}"
        nics = [{"mac": f"52:54:00:f0:{i:02x}:{n:02x}", "network": "prod"} for n in range(2)]
        doms[name] = real_vms.start(name, make_base(image_dir / f"{name}.qcow2"), nics, {})
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    db = f"sqlite:///{tmp_path / 'db.sqlite'}"
    with Store.open(db) as store:
        cmd = [sys.executable, "-m", "vmwarden.cli.main", "scan", "-c", URI, "-p", str(policy)]
        proc = subprocess.Popen(
            [*cmd, "--enforce", "--no-inspect", "--format", "json", "--db", db],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={k: v for k, v in os.environ.items() if k != "VMWARDEN_FAULT"},
        )
        deadline = time.monotonic() + 240
        while not store.journal_entries(action="quarantine", limit=1):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.005)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=240)
        entries = store.journal_entries(action="quarantine")
        assert store.incomplete_actions() == []
    assert proc.returncode == 130, (proc.returncode, err)
    doc = json.loads(out)
    status = {a["name"]: a["status"] for a in doc["actions"]}
    done = sorted(n for n, s in status.items() if s == "done")
    assert done and len(done) < COUNT and set(status.values()) == {"done", "interrupted"}
    assert sorted(e.name for e in entries) == done and {e.status for e in entries} == {"done"}
    for name, dom in doms.items():
        live, persistent = both(dom)
        assert live == persistent, (name, live, persistent)  # in step, whatever was done
        expected = ISOLATED if name in done else {"network": "prod", "link": "up"}
        assert all(nic == expected for nic in live.values()), (name, live)
    assert "\nnot done (" in err and "interrupted by SIGINT" in err

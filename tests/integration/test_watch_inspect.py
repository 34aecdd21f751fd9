"""The power-on gate reads the disk: a VM whose disk holds an outdated openssl is held in
quarantine when started; once its disk is fixed and it is restarted, it is released by the
gate on its own. Real libvirtd + QEMU, a real ext4 guest disk, `vmwarden watch` as a process."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.inspect.conftest import build_tree_image, write_guest_tree
from tests.integration.conftest import ISOLATED, RealVMs, both
from tests.integration.test_watch_real import Daemon, define, isolated, journal, poll
from vmwarden.store import Store

pytestmark = pytest.mark.libvirtd

POLICY = """\
version: 1
quarantine: {network: quarantine, link_down: true}
rules:
  - name: stale-openssl
    resource: vm
    severity: high
    filters: [{type: stale-patches, baseline: {openssl: "3.0.11-1~deb12u2"}}]
    actions: [quarantine]
"""
OLD, FIXED = "Version: 3.0.2-0+deb12u1", "Version: 3.0.15-1~deb12u1"


def test_outdated_disk_is_held_then_released_once_fixed(
    real_vms: RealVMs, image_dir: Path, tmp_path: Path
) -> None:
    tree = tmp_path / "tree"
    write_guest_tree(tree)  # a Debian-like guest with openssl 3.0.2-0+deb12u1
    disk = build_tree_image(image_dir, tree, "stale-web.qcow2")
    mac = "52:54:00:7f:00:40"
    dom = define(real_vms, "vmw-watch-stale", disk, mac, {"owner": "bob", "registered": "yes"})
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    db = tmp_path / "watch.db"
    d = Daemon(policy, f"sqlite:///{db}", tmp_path / "watch.log", "--inspect", "--interval", "5")
    try:
        d.ready()
        # Shut off with a stale disk: isolated in its definition before anyone starts it.
        poll(lambda: both(dom)[1][mac] == ISOLATED, timeout=60, every=0.1)
        sweeps = d.ready()["sweeps"]
        dom.create()
        poll(lambda: isolated(dom), timeout=30)  # it boots on quarantine
        # Two full reconciles later (each reads the disk again if it changed), it is judged:
        # still held, still isolated, never released, and the finding names the package.
        poll(lambda: (d.state() or {}).get("sweeps", 0) >= sweeps + 2, timeout=60, every=0.2)
        state = d.state() or {}
        assert dom.UUIDString() in state["held"]
        assert isolated(dom)
        assert [e for e in journal(db, "vmw-watch-stale", "release") if e.status == "done"] == []
        with Store.open(f"sqlite:///{db}") as store:
            (stale,) = [f for f in store.open_findings() if f.rule == "stale-openssl"]
        assert stale.evidence["packages"][0]["installed"] == "3.0.2-0+deb12u1"
        # The owner patches the disk (here: rebuilt with the fixed openssl) and restarts it.
        dom.destroy()
        status = tree / "var/lib/dpkg/status"
        status.write_text(status.read_text().replace(OLD, FIXED))
        fixed = build_tree_image(tmp_path, tree, "fixed.qcow2")
        shutil.copyfile(fixed, disk)  # same path, new content: a new identity for the cache
        dom.create()
        released: list[Any] = poll(
            lambda: [e for e in journal(db, "vmw-watch-stale", "release") if e.status == "done"],
            timeout=90,
            every=0.1,
        )
        assert released[0].actor == "vmwarden-gate"
        assert released[0].reason.startswith("automatic release: ")
        poll(lambda: both(dom) == ({mac: {"network": "prod", "link": "up"}},) * 2, timeout=30)
        assert d.proc.poll() is None
    finally:
        d.stop()

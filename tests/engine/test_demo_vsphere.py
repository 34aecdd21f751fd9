"""The demo's vSphere estate (#13 done-means): with Go, vcsim with an approved VM, a rogue one
and one on the wrong portgroup, swept together with the libvirt demo; without Go, one line
saying so and libvirt only."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import urllib.parse
from collections import defaultdict
from pathlib import Path

import pytest

from vmwarden.cli.scan import run_sweep
from vmwarden.engine.demo import build_demo_estate
from vmwarden.engine.demo_vsphere import approve_template, unavailable, vsphere_estate
from vmwarden.store import Store

VSPHERE_VMS = {"DC0_H0_VM0", "DC0_H1_VM0", "DC0_H2_VM0"}


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_the_vsphere_estate_is_swept_with_the_libvirt_one(tmp_path: Path) -> None:
    why = unavailable()
    if why is not None:
        pytest.skip(f"vcsim cannot be built here: {why}")
    estate = build_demo_estate(tmp_path / "wd")
    db = f"sqlite:///{tmp_path / 'demo.db'}"
    with vsphere_estate(tmp_path / "wd", estate.images_dir / "templates") as vs:
        assert vs.uri is not None and vs.template is not None, vs.note
        port = urllib.parse.urlsplit(vs.uri.replace("vsphere://", "https://")).port
        assert port is not None and _port_open(port)
        assert "vmw-demo@127.0.0.1" in vs.uri  # loopback only
        store = Store.open(db)
        try:
            approve_template(store, vs.template)
        finally:
            store.close()
        result = run_sweep(
            [*estate.uris, vs.uri], estate.policy_path, db, enforce=True, actor="test",
            show_progress=False,
        )  # fmt: skip
        assert not result.unreachable
    assert not _port_open(port)  # the simulator stops with the block
    got: dict[str, set[str]] = defaultdict(set)
    for f in result.findings:
        got[f.name].add(f.rule)
    for name in VSPHERE_VMS:
        assert got.get(name, set()) == set(vs.expected.get(name, [])), name
    assert got["disk1.vmdk"] == {"world-readable-image"}  # a datastore file has no mode
    # the libvirt demo is judged exactly as without vSphere
    for name, rules in estate.expected.items():
        assert got[name] == set(rules), name
    quarantined = {a.name for a in result.actions if a.action == "quarantine"}
    assert {"DC0_H1_VM0", "DC0_H2_VM0"} <= quarantined and "DC0_H0_VM0" not in quarantined
    done = {a.name: a.status for a in result.actions if a.action == "quarantine"}
    assert done["DC0_H2_VM0"] == "done" and done["DC0_H1_VM0"] == "done"


def test_each_run_makes_up_its_own_login(tmp_path: Path) -> None:
    if unavailable() is not None:
        pytest.skip(f"vcsim cannot be built here: {unavailable()}")
    estate = build_demo_estate(tmp_path / "wd")
    seen = []
    for _ in range(2):
        with vsphere_estate(tmp_path / "wd", estate.images_dir / "templates") as vs:
            assert vs.uri is not None
            seen.append(os.environ["VMWARDEN_VSPHERE_PASSWORD"])
    assert seen[0] != seen[1] and all(len(p) >= 20 for p in seen)
    assert "VMWARDEN_VSPHERE_PASSWORD" not in os.environ  # restored afterwards


def test_without_go_the_demo_says_so_in_one_line_and_runs_libvirt_only(tmp_path: Path) -> None:
    """A PATH without ``go`` (a machine without the toolchain): the real CLI, one line on
    stderr naming what is missing, and the libvirt estate swept alone."""
    bin_dir = tmp_path / "bin"  # every command on PATH but go
    bin_dir.mkdir()
    for folder in os.environ["PATH"].split(os.pathsep):
        for tool in sorted(Path(folder).glob("*")) if Path(folder).is_dir() else []:
            link = bin_dir / tool.name
            if tool.name != "go" and not link.exists() and os.access(tool, os.X_OK):
                link.symlink_to(tool)
    assert shutil.which("go", path=str(bin_dir)) is None
    vmwarden = str(Path(sys.executable).with_name("vmwarden"))
    proc = subprocess.run(
        [vmwarden, "demo", "--workdir", str(tmp_path / "wd"), "--json",
         "--db", f"sqlite:///{tmp_path / 'demo.db'}"],
        env={**os.environ, "PATH": str(bin_dir)},
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if "vSphere" in line]
    assert len(lines) == 1 and "not included" in lines[0] and "libvirt only" in lines[0]
    assert "Go" in lines[0]
    names = {vm["name"] for vm in json.loads(proc.stdout)["vms"]}
    assert names and not names & VSPHERE_VMS

"""``/state``'s latencies against a real libvirtd: one entry per start of a rejected VM.

The daemon times each start from the start's own lifecycle event to libvirt returning from
moving the live NIC (``vmwarden.engine.watch.latency``). Checked here by order only, against
the test's own clock readings around each start: every entry falls inside its start's
window, none is missing or doubled. No duration is asserted. Every VM is ``vmw-wf-*`` and the
daemon watches only those.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import libvirt
import pytest

from tests.integration.conftest import ISOLATED, RealVMs, both, domain_xml, make_base, make_clone
from tests.integration.test_watch_real import POLICY, Daemon, poll
from vmwarden.inspect.digest import digest_file

pytestmark = pytest.mark.libvirtd

PATTERN = "vmw-wf-*"


@pytest.fixture
def rogue_disk(image_dir: Path) -> Iterator[tuple[Path, Path]]:
    approved = make_base(image_dir / "approved-base.qcow2")
    unapproved = make_base(image_dir / "random-download.qcow2", size="24M")
    yield approved, make_clone(unapproved, image_dir / "rogue.qcow2")


@pytest.fixture
def watch(tmp_path: Path, rogue_disk: tuple[Path, Path], real_vms: RealVMs) -> Iterator[Daemon]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.format(digest=digest_file(rogue_disk[0])))
    db = f"sqlite:///{tmp_path / 'watch.db'}"
    d = Daemon(policy, db, tmp_path / "watch.log", only=PATTERN)
    try:
        d.ready()
        yield d
    finally:
        d.stop()


def entries(d: Daemon, vm_id: str) -> list[dict[str, Any]]:
    return [x for x in (d.state() or {}).get("latencies", []) if x["id"] == vm_id]


def live_isolated(dom: libvirt.virDomain) -> bool:
    live = both(dom)[0]
    return bool(live) and all(n == ISOLATED for n in live.values())


def start_and_wait(d: Daemon, vm_id: str, n: int, start: Any) -> tuple[datetime, datetime]:
    """Start once; wait until the VM is isolated and the daemon has its ``n``-th entry."""
    before = datetime.now(UTC)
    dom = start()
    poll(lambda: live_isolated(dom), timeout=60)
    poll(lambda: len(entries(d, vm_id)) >= n, timeout=60, every=0.02)
    after = datetime.now(UTC)
    dom.destroy()
    return before, after


def test_each_start_of_a_rejected_vm_records_one_latency(
    watch: Daemon,
    real_vms: RealVMs,
    rogue_disk: tuple[Path, Path],
    system_conn: libvirt.virConnect,
) -> None:
    disk = rogue_disk[1]
    nics = [{"mac": "52:54:00:7f:0f:01", "network": "prod"}]
    meta = {"owner": "mallory", "registered": "yes"}
    # A transient VM (createXML): nothing can isolate it ahead, the gate moves its live NIC.
    vm_id = str(uuid.uuid4())
    xml = domain_xml("vmw-wf-transient", real_vms.virt, disk, nics, meta)
    xml = xml.replace("<name>", f"<uuid>{vm_id}</uuid><name>", 1)
    windows = [
        start_and_wait(watch, vm_id, i + 1, lambda: system_conn.createXML(xml, 0)) for i in range(3)
    ]
    # A persistent VM started again and again: held once, then it boots isolated.
    dom = real_vms.define("vmw-wf-persistent", disk, nics, meta)
    kept = dom.UUIDString()
    kept_windows = [start_and_wait(watch, kept, i + 1, lambda: _create(dom)) for i in range(3)]
    poll(lambda: (s := watch.state()) and s["events"]["handled"] == s["events"]["received"])

    for vm, wins in ((vm_id, windows), (kept, kept_windows)):
        got = entries(watch, vm)
        assert len(got) == len(wins)  # one per start: none dropped, none doubled
        for entry, (before, after) in zip(got, wins, strict=True):
            started = datetime.fromisoformat(entry["started"])
            isolated = datetime.fromisoformat(entry["isolated"])
            assert before <= started <= isolated <= after  # inside its own start's window
            assert entry["seconds"] >= 0 and entry["event"] in ("started", "resumed")
        assert [x["started"] for x in got] == sorted(x["started"] for x in got)
    transient = entries(watch, vm_id)
    assert {x["how"] for x in transient} <= {"gate", "already"}  # never "at boot": no config
    persistent = entries(watch, kept)
    assert [x["how"] for x in persistent[1:]] == ["at-boot", "at-boot"]  # its definition is held
    assert all(x["seconds"] == 0 for x in persistent[1:])
    ms = [(x["how"], round(x["seconds"] * 1000)) for x in transient + persistent]
    print(f"\ndaemon's latencies (ms): {ms}")


def _create(dom: libvirt.virDomain) -> libvirt.virDomain:
    dom.create()
    return dom

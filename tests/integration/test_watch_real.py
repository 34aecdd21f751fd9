"""`vmwarden watch` (the real CLI, a subprocess) against a real libvirtd + QEMU.

Every VM is named ``vmw-watch-*`` and the daemon runs with ``--only 'vmw-watch-*'``: the
libvirtd is shared with other engineers' tests, whose VMs it must never touch. What the
daemon did is checked through the test's own libvirt connection and the store. Polls are
bounded (a hung daemon fails the test); the latencies they see are printed for the report,
never asserted.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest

from tests.integration.conftest import (
    ISOLATED,
    URI,
    RealVMs,
    both,
    make_base,
    make_clone,
)
from vmwarden.api.tokens import mint
from vmwarden.inspect.digest import digest_file
from vmwarden.store import Store
from vmwarden.store.users import UsersRepo

pytestmark = pytest.mark.libvirtd

META_NS = "http://vmwarden.dev/xmlns/vm/1"
POLICY = """\
version: 1
templates:
  - name: approved-base
    digest: {digest}
quarantine: {{network: quarantine, link_down: true}}
gate:
  hold: [not-approved-template]
rules:
  - name: unapproved-template
    resource: vm
    severity: high
    filters: [not-approved-template]
    actions: [quarantine]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def poll(what: Callable[[], Any], timeout: float = 30.0, every: float = 0.005) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def isolated(dom: libvirt.virDomain) -> bool:
    live, config = both(dom)
    return bool(live) and all(n == ISOLATED for n in [*live.values(), *config.values()])


def reader_token(db: str) -> str:
    """/state and /metrics need a token from every client (#11.4): an auditor in the store."""
    token, tid, token_hash = mint()
    with Store.open(db) as store:
        UsersRepo(store).add_user(f"reader-{uuid.uuid4().hex[:8]}", "auditor", tid, token_hash,
                                  actor="tests")  # fmt: skip
    return token


class Daemon:
    """``vmwarden watch`` as an operator runs it, with /state and /metrics on a free port."""

    def __init__(
        self, policy: Path, db: str, log: Path, *extra: str, only: str = "vmw-watch-*"
    ) -> None:
        self.token = reader_token(db)
        self.port = free_port()
        self.log = log
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "vmwarden.cli.main", "watch", "-c", URI, "-p", str(policy),
                "--db", db, "--only", only, "--listen", f"127.0.0.1:{self.port}",
                "--no-inspect", "-v", *extra,
            ],
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            env=os.environ.copy(),
        )  # fmt: skip

    def state(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(self.request("/state"), timeout=5) as r:
                return json.loads(r.read())
        except OSError:
            return None

    def request(self, path: str) -> urllib.request.Request:
        """A request signed with the daemon's auditor token (/state and /metrics need one)."""
        return urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            headers={"Authorization": f"Bearer {self.token}"},
        )

    def ready(self) -> dict[str, Any]:
        def up() -> dict[str, Any] | None:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"watch exited {self.proc.returncode}:\n{self.log.read_text()}"
                )
            s = self.state()
            return s if s and s["sweeps"] >= 1 and s["hosts"][URI]["state"] == "up" else None

        return poll(up, timeout=60, every=0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def images(image_dir: Path) -> dict[str, Any]:
    approved = make_base(image_dir / "approved-base.qcow2")
    unapproved = make_base(image_dir / "random-download.qcow2", size="24M")
    return {"dir": image_dir, "approved": approved, "unapproved": unapproved}


@pytest.fixture
def daemon(
    tmp_path: Path, images: dict[str, Any], real_vms: RealVMs
) -> Iterator[Callable[..., Daemon]]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.format(digest=digest_file(images["approved"])))
    started: list[Daemon] = []

    def _start(*extra: str) -> Daemon:
        d = Daemon(policy, f"sqlite:///{tmp_path / 'watch.db'}", tmp_path / "watch.log", *extra)
        started.append(d)
        d.ready()
        return d

    yield _start
    for d in started:
        d.stop()


def define(
    real_vms: RealVMs, name: str, disk: Path, mac: str, meta: dict[str, str]
) -> libvirt.virDomain:
    return real_vms.define(name, disk, [{"mac": mac, "network": "prod"}], meta)


def journal(db: Path, name: str, action: str) -> list[Any]:
    with Store.open(f"sqlite:///{db}") as store:
        return [e for e in store.journal_entries(action=action) if e.name == name]


def test_rogue_vm_started_is_isolated_live_and_persistent(
    daemon: Callable[..., Daemon], real_vms: RealVMs, images: dict[str, Any], tmp_path: Path
) -> None:
    d = daemon()
    seen: list[float] = []  # from dom.create() returning (the VM runs) to isolated, both sides
    for i in range(5):
        disk = make_clone(images["unapproved"], images["dir"] / f"rogue{i}.qcow2")
        meta = {"owner": "mallory", "registered": "yes"}
        dom = define(real_vms, f"vmw-watch-rogue{i}", disk, f"52:54:00:7f:00:1{i}", meta)
        dom.create()  # right after defining: races the isolate-ahead path on purpose
        t0 = time.monotonic()
        poll(lambda dom=dom: isolated(dom), timeout=30)
        seen.append(time.monotonic() - t0)
    daemon_side = sorted(x["seconds"] for x in d.state()["latencies"])
    ms = [round(x * 1000) for x in sorted(seen)]
    print(
        f"\nstarted→isolated (separate connection): p50 {statistics.median(ms)} ms,"
        f" max {max(ms)} ms"
        f" {ms}; daemon event→quarantined: {[round(x * 1000) for x in daemon_side]} ms"
    )
    # The compliant VM is left alone.
    clone = make_clone(images["approved"], images["dir"] / "approved-clone.qcow2")
    good = define(real_vms, "vmw-watch-good", clone, "52:54:00:7f:00:20", {"registered": "yes"})
    good.create()
    poll(lambda: (d.state() or {}).get("events", {}).get("received", 0) >= 8, timeout=30)
    poll(lambda: journal(tmp_path / "watch.db", "vmw-watch-good", "quarantine") == [] and d.state())
    time.sleep(0.5)  # let the daemon finish with the start event before looking
    assert journal(tmp_path / "watch.db", "vmw-watch-good", "quarantine") == []
    assert both(good)[0] == {"52:54:00:7f:00:20": {"network": "prod", "link": "up"}}
    # --listen serves the API beside the daemon: health is open, the rest needs a token,
    # /metrics too, even for this loopback client.
    base = f"http://127.0.0.1:{d.port}"
    with urllib.request.urlopen(f"{base}/api/health", timeout=5) as r:
        assert r.status == 200
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{base}/api/vms", timeout=5)
    assert refused.value.code == 401
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{base}/metrics", timeout=5)
    assert refused.value.code == 401
    with urllib.request.urlopen(d.request("/metrics"), timeout=5) as r:
        assert b"vmwarden_" in r.read()


def test_power_on_gate_holds_then_releases_automatically(
    daemon: Callable[..., Daemon], real_vms: RealVMs, images: dict[str, Any], tmp_path: Path
) -> None:
    clone = make_clone(images["approved"], images["dir"] / "late.qcow2")
    mac = "52:54:00:7f:00:30"
    dom = define(real_vms, "vmw-watch-late", clone, mac, {"owner": "bob", "registered": "no"})
    d = daemon()
    # Admission (a): shut off and unregistered, it is isolated in its definition already.
    poll(lambda: both(dom)[1][mac] == ISOLATED, timeout=30)
    dom.create()
    poll(lambda: isolated(dom), timeout=30)  # held: boots on quarantine
    # The cause is fixed: the owner registers it through the metadata API, then restarts it.
    flags = libvirt.VIR_DOMAIN_AFFECT_LIVE | libvirt.VIR_DOMAIN_AFFECT_CONFIG
    dom.setMetadata(
        libvirt.VIR_DOMAIN_METADATA_ELEMENT,
        "<vm><owner>bob</owner><registered>yes</registered></vm>",
        "vmwarden",
        META_NS,
        flags,
    )
    dom.destroy()
    dom.create()
    db = tmp_path / "watch.db"
    (release,) = poll(
        lambda: [e for e in journal(db, "vmw-watch-late", "release") if e.status == "done"],
        timeout=30,
        every=0.05,
    )
    assert release.actor == "vmwarden-gate"
    assert release.reason.startswith("automatic release: ")
    poll(lambda: both(dom) == ({mac: {"network": "prod", "link": "up"}},) * 2, timeout=30)
    assert d.proc.poll() is None


def test_libvirtd_restart_vm_started_while_disconnected_is_found(
    daemon: Callable[..., Daemon],
    real_vms: RealVMs,
    images: dict[str, Any],
    tmp_path: Path,
    system_conn: libvirt.virConnect,
) -> None:
    db = tmp_path / "watch.db"
    clone = make_clone(images["approved"], images["dir"] / "steady.qcow2")
    steady = define(real_vms, "vmw-watch-steady", clone, "52:54:00:7f:00:40", {"registered": "yes"})
    steady.create()
    d = daemon("--backoff", "10:10")  # a window long enough to start a VM in
    poll(lambda: journal(db, "vmw-watch-steady", "quarantine") == [] and d.state()["sweeps"] >= 1)
    with Store.open(f"sqlite:///{db}") as store:
        history_before = [h.to_dict() for h in store.vm_history("vmw-watch-steady")]
        journal_before = [e.journal_id for e in store.journal_entries()]
    assert history_before
    # Restart libvirtd (by its pid; the only test that does): the daemon's connection dies.
    pid = int(Path("/run/libvirtd.pid").read_text())
    os.kill(pid, signal.SIGTERM)
    poll(lambda: not Path(f"/proc/{pid}").exists(), timeout=30, every=0.02)
    poll(lambda: d.state()["hosts"][URI]["state"] == "down", timeout=30, every=0.02)
    subprocess.run(["libvirtd", "-d"], check=True)
    fresh = poll(_open, timeout=30, every=0.02)
    # The session's connection died with libvirtd; give its object the new connection, so
    # the tests after this one (and the fixtures' teardown) keep working.
    system_conn._o, fresh._o = fresh._o, system_conn._o
    with contextlib.suppress(libvirt.libvirtError):
        fresh.close()
    disk = make_clone(images["unapproved"], images["dir"] / "sneaky.qcow2")
    dom = define(real_vms, "vmw-watch-sneaky", disk, "52:54:00:7f:00:41", {"registered": "yes"})
    dom.create()
    window = d.state()["hosts"][URI]
    assert window["state"] == "down" and window["connects"] == 1  # started while away
    poll(lambda: isolated(dom), timeout=60, every=0.05)
    assert d.state()["hosts"][URI]["connects"] == 2
    with Store.open(f"sqlite:///{db}") as store:
        history_after = [h.to_dict() for h in store.vm_history("vmw-watch-steady")]
        journal_after = [e.journal_id for e in store.journal_entries()]
        sneaky = store.get_vm("vmw-watch-sneaky")
    assert history_after[: len(history_before)] == history_before  # nothing lost
    assert set(journal_before) <= set(journal_after)
    assert sneaky is not None and sneaky["state"] == "running"
    assert [e.status for e in journal(db, "vmw-watch-sneaky", "quarantine")] == ["done"]
    steady = system_conn.lookupByName("vmw-watch-steady")
    assert both(steady)[0] == {"52:54:00:7f:00:40": {"network": "prod", "link": "up"}}


def _open() -> libvirt.virConnect | None:
    try:
        return libvirt.open(URI)
    except libvirt.libvirtError:
        return None

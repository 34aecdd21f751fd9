"""The watch daemon in-process, on the libvirt test driver: events, gate, bursts, metrics.

The test driver is one private hypervisor per connection, so events are driven through the
daemon's own connection (``watcher.hosts[uri].source.conn``) from the test thread. libvirt
accepts one event loop per process: every daemon of this module runs on one loop thread.
Nothing is mocked: real libvirt, real SQLite, real HTTP receivers; no wall-clock assertions.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import libvirt
import pytest
from lxml import etree

from vmwarden.engine.fleetgen import FleetMeta, FleetNic, FleetVM, write_fleet
from vmwarden.engine.inspection import InspectionOptions
from vmwarden.engine.scan import SweepOptions
from vmwarden.engine.watch import GATE_ACTOR, WatchConfig, Watcher
from vmwarden.errors import PolicyError
from vmwarden.policy import parse_policy
from vmwarden.store import Store

GOOD = "22222222-2222-4222-8222-000000000001"
BURST = "22222222-2222-4222-8222-000000000002"
LATE = "22222222-2222-4222-8222-000000000003"
META_NS = "http://vmwarden.dev/xmlns/vm/1"

POLICY = """\
version: 1
quarantine: {{network: quarantine, link_down: true}}
gate:
  hold: [unregistered]
notify:
  - {{type: webhook, url: "{url}", timeout: 30, retries: 0}}
rules:
  - name: unregistered-vm
    resource: vm
    severity: medium
    filters: [unregistered]
    actions: [notify]
"""


def wait_for(what: Callable[[], Any], timeout: float = 30.0, message: str = "") -> Any:
    """Poll until ``what()`` is truthy (a bound for a hung daemon, not a latency check)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {message or what}")


class Receiver:
    """A real HTTP webhook receiver; ``gate`` (when set) blocks every answer until opened."""

    def __init__(self) -> None:
        self.alerts: list[dict[str, Any]] = []
        self.gate: threading.Event | None = None
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.gate is not None:
                    receiver.gate.wait(60)
                receiver.alerts.append(json.loads(body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def events(self, event: str, name: str | None = None) -> list[dict[str, Any]]:
        return [a for a in self.alerts if a["event"] == event and name in (None, a["name"])]

    def close(self) -> None:
        if self.gate is not None:
            self.gate.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="session")
def loop(watch_loop: asyncio.AbstractEventLoop) -> asyncio.AbstractEventLoop:
    return watch_loop  # shared by every module that watches in-process (tests/conftest.py)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def fleet(tmp_path: Path) -> str:
    vms = [
        FleetVM(GOOD, "good", "running", nics=[FleetNic("52:54:00:0b:00:01", "prod")],
                metadata=FleetMeta(owner="alice", registered=True)),
        FleetVM(BURST, "burst", "running", nics=[FleetNic("52:54:00:0b:00:02", "prod")]),
        FleetVM(LATE, "late", "shutoff", nics=[FleetNic("52:54:00:0b:00:03", "prod")],
                metadata=FleetMeta(owner="bob", registered=False)),
    ]  # fmt: skip
    return f"test://{write_fleet(tmp_path / 'hv1.xml', vms, ['prod', 'quarantine'])}"


class Running:
    def __init__(self, watcher: Watcher, future: Any) -> None:
        self.watcher, self.future = watcher, future

    @property
    def conn(self) -> libvirt.virConnect:
        (host,) = self.watcher.hosts.values()
        return host.source.conn

    def idle(self) -> bool:
        w = self.watcher
        return w.queue.idle and not w.scheduler.running and not w.scheduler._pending


@pytest.fixture
def start(loop: asyncio.AbstractEventLoop, tmp_path: Path) -> Iterator[Callable[..., Running]]:
    running: list[Running] = []

    def _start(uri: str, policy_text: str, **config: Any) -> Running:
        store = Store.open(f"sqlite:///{tmp_path / 'watch.db'}")
        policy = parse_policy(policy_text, source="test-policy.yaml")
        cfg = WatchConfig(uris=[uri], interval=3600, **config)
        options = SweepOptions(inspect=InspectionOptions(enabled=False))
        watcher = Watcher(cfg, policy, store, sweep_options=options)
        future = asyncio.run_coroutine_threadsafe(watcher.run(), loop)
        wait_for(lambda: watcher.started.is_set() or future.done(), message="first reconcile")
        if future.done():
            future.result()
        r = Running(watcher, future)
        running.append(r)
        return r

    yield _start
    for r in running:
        r.watcher.stop()
        r.future.result(30)
        r.watcher.store.close()


def nic(conn: libvirt.virConnect, name: str, *, inactive: bool) -> tuple[str, str]:
    flags = libvirt.VIR_DOMAIN_XML_INACTIVE if inactive else 0
    root = etree.fromstring(conn.lookupByName(name).XMLDesc(flags).encode())
    iface = root.find("devices/interface")
    link = iface.find("link")
    return iface.find("source").get("network"), "up" if link is None else link.get("state")


def journal(store: Store, vm_id: str, action: str) -> list[Any]:
    return store.journal_entries(vm_id=vm_id, action=action)


def finished(store: Store, vm_id: str, action: str) -> list[Any]:
    """Journal entries of an action once none of them is still pending."""
    entries = journal(store, vm_id, action)
    return [] if any(e.status == "pending" for e in entries) else entries


# the neutral VmEvent kinds a libvirt lifecycle callback becomes (model.events)
_LIFECYCLE_KINDS = ("started", "stopped", "suspended", "resumed", "defined", "undefined", "other")


def lifecycle_events(w: Any, uri: str) -> float:
    """Lifecycle events the daemon counted for ``uri`` (one metric label per VmEvent kind)."""
    return sum(w.metrics.events.value(uri=uri, kind=k) for k in _LIFECYCLE_KINDS)


def test_burst_of_500_lifecycle_events_loses_none_and_duplicates_no_action(
    start: Callable[..., Running], fleet: str, receiver: Receiver
) -> None:
    r = start(fleet, POLICY.format(url=receiver.url))
    w = r.watcher
    wait_for(r.idle, message="idle after start")
    events_before = lifecycle_events(w, fleet)
    received_before = w.queue.received
    seen: list[int] = []  # the test's own subscription on the same connection
    cb = r.conn.domainEventRegisterAny(
        r.conn.lookupByUUIDString(BURST),
        libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
        lambda *_a: seen.append(1),
        None,
    )
    dom = r.conn.lookupByUUIDString(BURST)
    for _ in range(250):  # 500 lifecycle events: stopped + started, as fast as libvirt goes
        dom.destroy()
        dom.create()
    wait_for(lambda: len(seen) >= 500 and w.queue.handled == w.queue.received, message="drain")
    wait_for(r.idle, message="idle")
    r.conn.domainEventDeregisterAny(cb)
    burst_events = lifecycle_events(w, fleet) - events_before
    assert burst_events == len(seen) >= 500  # every event libvirt emitted reached the daemon
    assert w.queue.received - received_before >= 500
    assert w.queue.handled == w.queue.received  # ...and was handled
    assert w.queue.batches < w.queue.received  # coalesced
    quarantines = journal(w.store, BURST, "quarantine")
    assert len(quarantines) == 1  # one hold, however many starts
    assert quarantines[0].actor == GATE_ACTOR
    assert journal(w.store, BURST, "release") == []  # still unregistered: never released
    assert nic(r.conn, "burst", inactive=True) == ("quarantine", "down")
    # (The live NIC is left as it was: the test driver cannot change a running domain's
    # devices; the real-libvirtd tests check the live side.)
    wait_for(lambda: receiver.events("gate.held", "burst"), message="held alert")
    wait_for(r.idle)
    assert len(receiver.events("gate.held", "burst")) == 1  # one alert per state change
    history = w.store.vm_history(BURST)
    assert [h.new for h in history if h.field == "state"][-1] == "running"


def test_gate_holds_a_shut_off_vm_and_releases_it_once_fixed(
    start: Callable[..., Running], fleet: str, receiver: Receiver
) -> None:
    r = start(fleet, POLICY.format(url=receiver.url))
    w = r.watcher
    # Admission (a): the shut-off, unregistered VM was isolated ahead of its start.
    (ahead,) = journal(w.store, LATE, "quarantine")
    assert ahead.actor == GATE_ACTOR and "ahead of power-on" in ahead.reason
    assert nic(r.conn, "late", inactive=True) == ("quarantine", "down")
    # The compliant VM was left alone.
    assert journal(w.store, GOOD, "quarantine") == []
    dom = r.conn.lookupByUUIDString(LATE)
    dom.create()  # boots isolated; the gate keeps holding it
    wait_for(lambda: receiver.events("gate.held", "late"), message="held alert")
    assert journal(w.store, LATE, "release") == []
    dom.destroy()
    # The cause is fixed: the owner registers it (metadata API, persistent definition).
    dom.setMetadata(
        libvirt.VIR_DOMAIN_METADATA_ELEMENT,
        "<vm><owner>bob</owner><registered>yes</registered></vm>",
        "vmwarden",
        META_NS,
        libvirt.VIR_DOMAIN_AFFECT_CONFIG,
    )
    (release,) = wait_for(lambda: finished(w.store, LATE, "release"), message="release")
    assert release.actor == GATE_ACTOR
    assert release.reason.startswith("automatic release: ")
    assert json.loads(release.reason.removeprefix("automatic release: "))["gate"] == "allow"
    assert release.status == "done"
    assert nic(r.conn, "late", inactive=True) == ("prod", "up")
    dom.create()  # restarted: passes the gate, stays on prod
    wait_for(r.idle)
    wait_for(lambda: w.queue.handled == w.queue.received and r.idle())
    assert len(journal(w.store, LATE, "quarantine")) == 1
    assert nic(r.conn, "late", inactive=False) == ("prod", "up")
    wait_for(lambda: receiver.events("gate.released", "late"), message="released alert")


def test_slow_receiver_never_delays_quarantine(
    start: Callable[..., Running], fleet: str, receiver: Receiver
) -> None:
    receiver.gate = threading.Event()  # the receiver answers nothing until the test says so
    r = start(fleet, POLICY.format(url=receiver.url))
    w = r.watcher
    r.conn.lookupByUUIDString(BURST).destroy()
    r.conn.lookupByUUIDString(BURST).create()
    # Quarantine completes while every alert delivery is still stuck in the receiver.
    (hold,) = wait_for(lambda: finished(w.store, BURST, "quarantine"), message="quarantine")
    assert hold.status in ("done", "partial")  # partial: the test driver has no live update
    assert receiver.alerts == []
    receiver.gate.set()
    wait_for(lambda: receiver.events("gate.held", "burst"), message="alert after unblocking")
    # One alert per finding state change: unregistered-vm opened once per unregistered VM.
    wait_for(lambda: len(receiver.events("finding.opened")) == 2, message="opened alerts")


def get(url: str, token: str | None) -> tuple[int, bytes, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
            return r.status, r.read(), r.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers


def test_metrics_endpoint(start: Callable[..., Running], fleet: str, receiver: Receiver) -> None:
    secret = "/services/T0000/B0000/XXXXsecretXXXX"  # a Slack-style webhook's secret path
    r = start(
        fleet,
        POLICY.format(url=receiver.url + secret),
        listen=("127.0.0.1", 0),
        authorize=lambda token: token == "let-me-in",
    )
    w = r.watcher
    r.conn.lookupByUUIDString(BURST).suspend()
    r.conn.lookupByUUIDString(BURST).resume()
    wait_for(lambda: w.queue.handled >= 2 and r.idle())
    wait_for(lambda: receiver.alerts, message="an alert through the secret URL")
    host, port = w.listening
    # a token is needed from every client, this loopback one included (#11.4)
    for path in ("/metrics", "/state"):
        for token in (None, "wrong"):
            status, _, headers = get(f"http://{host}:{port}{path}", token)
            assert status == 401
            assert headers["WWW-Authenticate"] == "Bearer"
    status, body, headers = get(f"http://{host}:{port}/metrics", "let-me-in")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = body.decode()
    _, state_body, _ = get(f"http://{host}:{port}/state", "let-me-in")
    for served in (text, state_body.decode()):
        assert "secret" not in served and "/services/" not in served
    # past its first reconcile's gate and records: what a footprint measurement waits for
    assert json.loads(state_body)["watching"] is True
    assert f'receiver="webhook http://127.0.0.1:{receiver.server.server_address[1]}"' in text
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            samples[key] = float(value)
    assert samples[f'vmwarden_connection_up{{uri="{fleet}"}}'] == 1
    assert samples['vmwarden_vms{host="hv1",state="running"}'] == 2
    assert samples['vmwarden_vms{host="hv1",state="shutoff"}'] == 1
    assert samples["vmwarden_quarantined_vms"] == 1  # "late", isolated ahead of power-on
    assert samples['vmwarden_findings{severity="medium"}'] == 2
    for kind in ("suspended", "resumed"):  # neutral VmEvent kinds label the counter
        assert samples[f'vmwarden_events_total{{kind="{kind}",uri="{fleet}"}}'] >= 1
    assert "vmwarden_event_to_action_seconds_bucket" in text or "event_to_action" in text
    state = json.loads(state_body)
    assert state["hosts"][fleet]["state"] == "up"


def test_state_decide_is_the_admission_hook_point(
    start: Callable[..., Running], fleet: str, receiver: Receiver
) -> None:
    r = start(fleet, POLICY.format(url=receiver.url))
    xml_late = r.conn.lookupByUUIDString(LATE).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    xml_good = r.conn.lookupByUUIDString(GOOD).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    held = r.watcher.state.decide(xml_late)
    assert (held.decision, held.hold, held.known) == ("allow", True, True)
    assert held.reasons[0]["filter"] == "unregistered"
    good = r.watcher.state.decide(xml_good)
    assert (good.decision, good.hold) == ("allow", False)


def test_held_alert_is_not_resent_by_a_new_daemon_but_its_release_is_sent(
    start: Callable[..., Running], fleet: str, receiver: Receiver
) -> None:
    policy = POLICY.format(url=receiver.url)
    first = start(fleet, policy)
    first.conn.lookupByUUIDString(LATE).create()  # boots isolated; the gate keeps holding it
    wait_for(lambda: receiver.events("gate.held", "late"), message="held alert")
    wait_for(first.idle)
    wait_for(lambda: len(receiver.events("finding.opened")) == 2, message="finding alerts")
    (hold,) = journal(first.watcher.store, LATE, "quarantine")
    (told,) = [e for e in journal(first.watcher.store, LATE, "notify") if e.actor == GATE_ACTOR]
    assert told.changes == {"alert": "gate.held", "hold": hold.journal_id}  # the memory
    first.watcher.stop()
    first.future.result(30)
    first.watcher.store.close()
    del first  # nothing of the first daemon is left but its store

    second = start(fleet, policy)
    w = second.watcher
    dom = second.conn.lookupByUUIDString(LATE)
    dom.create()  # a new start of the same hold: judged and kept, not announced again
    wait_for(lambda: w.queue.handled == w.queue.received and second.idle(), message="settled")
    wait_for(lambda: w.sweeps >= 2, message="the start's reconcile")
    wait_for(second.idle)
    assert [e.journal_id for e in journal(w.store, LATE, "quarantine")] == [hold.journal_id]
    assert len(receiver.events("gate.held", "late")) == 1
    assert len(receiver.events("finding.opened")) == 2  # open findings come from the store
    # The cause clears: the owner registers the VM. The hold is released and that is sent.
    flags = libvirt.VIR_DOMAIN_AFFECT_LIVE | libvirt.VIR_DOMAIN_AFFECT_CONFIG
    dom.setMetadata(
        libvirt.VIR_DOMAIN_METADATA_ELEMENT,
        "<vm><owner>bob</owner><registered>yes</registered></vm>",
        "vmwarden",
        META_NS,
        flags,
    )
    (release,) = wait_for(lambda: finished(w.store, LATE, "release"), message="release")
    assert release.actor == GATE_ACTOR and release.status == "done"
    wait_for(lambda: receiver.events("gate.released", "late"), message="released alert")
    wait_for(second.idle)
    assert len(receiver.events("gate.held", "late")) == 1


def test_metadata_change_of_a_running_vm_is_judged_at_once(
    start: Callable[..., Running], fleet: str, receiver: Receiver
) -> None:
    """#10.8: no reconcile is due for an hour; unregistering a running VM holds it now."""
    r = start(fleet, POLICY.format(url=receiver.url))
    w = r.watcher
    wait_for(r.idle, message="idle after start")
    assert journal(w.store, GOOD, "quarantine") == []
    sweeps = w.sweeps
    r.conn.lookupByUUIDString(GOOD).setMetadata(
        libvirt.VIR_DOMAIN_METADATA_ELEMENT,
        "<vm><owner>alice</owner><registered>no</registered></vm>",
        "vmwarden",
        META_NS,
        libvirt.VIR_DOMAIN_AFFECT_LIVE | libvirt.VIR_DOMAIN_AFFECT_CONFIG,
    )
    (hold,) = wait_for(lambda: finished(w.store, GOOD, "quarantine"), 15, "quarantine")
    assert hold.actor == GATE_ACTOR
    assert hold.reason.startswith("metadata changed: unregistered")
    assert nic(r.conn, "good", inactive=True) == ("quarantine", "down")
    assert w.sweeps <= sweeps + 1  # judged on the event (its settle may run one reconcile)


RELOADED = """\
version: 1
quarantine: {network: quarantine, link_down: true}
rules:
  - name: unregistered-vm
    resource: vm
    severity: medium
    filters: [unregistered]
    actions: [quarantine]
"""


def test_reload_applies_a_good_policy_and_keeps_the_old_on_a_bad_one(
    start: Callable[..., Running],
    fleet: str,
    receiver: Receiver,
    loop: asyncio.AbstractEventLoop,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """#10.8 SIGHUP (what the CLI's handler calls): nothing quarantines "burst" until the
    reloaded policy does, at the reconcile the reload asks for; a bad policy changes nothing."""
    caplog.set_level(logging.INFO, logger="vmwarden")
    r = start(fleet, "version: 1\nquarantine: {network: quarantine}\nrules: []\n",
              hold_unregistered=False)  # fmt: skip
    w = r.watcher
    wait_for(r.idle, message="idle after start")
    assert journal(w.store, BURST, "quarantine") == []
    before = w.policy

    def reload(text: str) -> Any:
        coro = w.reload(lambda: parse_policy(text, source="reloaded.yaml"))
        return asyncio.run_coroutine_threadsafe(coro, loop).result(30)

    with pytest.raises(PolicyError):
        reload("version: 1\nrules: [{name: x, resource: vm, filters: [no-such-filter]}]\n")
    with pytest.raises(PolicyError, match="no `quarantine:` block"):
        reload("version: 1\nrules: []\n")
    assert w.policy is before and w.judge.policy is before and w.state.policy is before
    reload(RELOADED)
    assert w.policy is not before and w.gate.judge.policy is w.policy
    (hold,) = wait_for(lambda: finished(w.store, BURST, "quarantine"), 15, "quarantine")
    assert hold.actor == "vmwarden-watch" and hold.rule == "unregistered-vm"
    assert journal(w.store, GOOD, "quarantine") == []
    # watch -v: a quarantine made by a reconcile is logged
    wait_for(lambda: "reconcile: quarantine burst" in caplog.text, 10, "the reconcile's log")

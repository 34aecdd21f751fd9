"""``vmwarden watch``: the exposure window of a rogue VM, and the daemon's idle footprint.

Exposure (real libvirtd + QEMU): with ``watch`` running, define and start a VM the policy
rejects (a disk cloned from an image that is not an approved template), then poll its live
XML from a separate connection until its NIC is on the quarantine network with link down.
Measured from the ``create()`` call and from the STARTED lifecycle event (seen on a third
connection of the bench's own). Every VM is ``vmw-bench-*`` and the daemon runs with
``--only 'vmw-bench-*'``: the libvirtd is shared, nothing else is touched.

Footprint: ``watch`` on the 10k-VM test-driver fleet, after its first reconcile, left alone
(no events): CPU (utime+stime of the process and its children) and RSS. The fleet is served by
the real libvirtd (``test+unix:///fleet.xml``: libvirtd opens the test driver on that file),
so the daemon's RSS is its own, as against a real hypervisor, and libvirtd's CPU over the same
idle window, less its CPU over an equal window before watch started, is what watch costs it.
Without a reachable libvirtd the fleet runs in-process (``test://``) and the row says so.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.common import REPO, Sample

URI = "qemu:///system"
IMAGES = Path("/var/lib/libvirt/images")
NETWORKS = {"prod": "vmw-t-prod", "quarantine": "vmw-t-quar"}  # the integration tests' own
PREFIX = "vmw-bench-"
POLICY = """\
version: 1
templates: [{{name: approved-base, digest: "{digest}"}}]
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
VM_XML = """<domain type='{virt}'><name>{name}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>
<metadata><vmwarden:vm xmlns:vmwarden="http://vmwarden.dev/xmlns/vm/1">
<vmwarden:owner>mallory</vmwarden:owner><vmwarden:registered>yes</vmwarden:registered>
</vmwarden:vm></metadata>
<os><type arch='x86_64' machine='pc'>hvm</type><bios rebootTimeout='-1'/></os>
<devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
<source file='{disk}'/><target dev='vda' bus='virtio'/></disk>
<interface type='network'><mac address='{mac}'/><source network='prod'/><model type='virtio'/>
<rom enabled='no'/></interface></devices></domain>"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _poll(what: Callable[[], Any], timeout: float, every: float = 0.002) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout} s")


def reader_token(db: str) -> str:
    """/state needs a token from every client (#11.4): an auditor in the daemon's store."""
    import uuid

    from vmwarden.api.tokens import mint
    from vmwarden.store import Store
    from vmwarden.store.users import UsersRepo

    token, tid, token_hash = mint()
    with Store.open(db) as store:
        UsersRepo(store).add_user(f"bench-{uuid.uuid4().hex[:8]}", "auditor", tid, token_hash,
                                  actor="bench")  # fmt: skip
    return token


class Daemon:
    """``vmwarden watch`` in a subprocess, with /state on a loopback port."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.token = reader_token(args[args.index("--db") + 1])
        self.port = _free_port()
        cmd = [str(Path(sys.executable).parent / "vmwarden"), "watch", *args]
        cmd += ["--metrics-listen", f"127.0.0.1:{self.port}", "--no-inspect"]
        self.log = log
        self.proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=REPO)

    def state(self) -> dict[str, Any] | None:
        try:
            req = urllib.request.Request(
                f"http://127.0.0.1:{self.port}/state",
                headers={"Authorization": f"Bearer {self.token}"},
            )
            with urllib.request.urlopen(req, timeout=5) as r:
                return json.loads(r.read())
        except OSError:
            return None

    def ready(self, timeout: float) -> dict[str, Any]:
        def up() -> dict[str, Any] | None:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"watch exited {self.proc.returncode}: {self.log.read_text()[-800:]}"
                )
            s = self.state()
            ok = (
                s
                and s.get("sweeps", 0) >= 1
                and s.get("watching", True)  # the first reconcile's aftermath done too
                and all(h["state"] == "up" for h in s["hosts"].values())
            )
            return s if ok else None

        return _poll(up, timeout, every=0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@contextlib.contextmanager
def daemon(args: list[str], log: Path, ready_timeout: float) -> Iterator[Daemon]:
    d = Daemon(args, log)
    try:
        d.ready(ready_timeout)
        yield d
    finally:
        d.stop()


# -- exposure ----------------------------------------------------------------------------


def _nic_state(xml: str) -> tuple[str | None, str]:
    from lxml import etree

    iface = etree.fromstring(xml.encode()).find("devices/interface")
    if iface is None:
        return None, "up"
    source, link = iface.find("source"), iface.find("link")
    return (source.get("network") if source is not None else None), (
        link.get("state", "up") if link is not None else "up"
    )


class _Events:
    """STARTED lifecycle events of vmw-bench-* domains, by name, on the bench's connection."""

    def __init__(self) -> None:
        import libvirt

        libvirt.virEventRegisterDefaultImpl()
        self.started: dict[str, float] = {}
        self.conn = libvirt.open(URI)
        self._stop = False

        def on_event(_conn: Any, dom: Any, event: int, _detail: int, _opaque: Any) -> None:
            if event == libvirt.VIR_DOMAIN_EVENT_STARTED and dom.name().startswith(PREFIX):
                self.started.setdefault(dom.name(), time.monotonic())

        self.cb = self.conn.domainEventRegisterAny(
            None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, on_event, None
        )
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        import libvirt

        while not self._stop:
            libvirt.virEventRunDefaultImpl()

    def close(self) -> None:
        self._stop = True
        with contextlib.suppress(Exception):
            self.conn.domainEventDeregisterAny(self.cb)
            self.conn.close()


def _remove(conn: Any, name: str) -> None:
    import libvirt

    try:
        dom = conn.lookupByName(name)
    except libvirt.libvirtError:
        return
    with contextlib.suppress(libvirt.libvirtError):
        if dom.isActive():
            dom.destroy()
    with contextlib.suppress(libvirt.libvirtError):
        dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)


def exposure(trials: int) -> list[dict[str, Any]]:
    """Rows: create()→isolated and STARTED event→isolated (p50/p95/max over ``trials``)."""
    try:
        import libvirt

        subprocess.run(
            ["bash", str(REPO / "scripts" / "start-libvirtd.sh")], check=True, capture_output=True
        )
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # we report errors ourselves
        conn = libvirt.open(URI)
    except Exception as exc:
        return [{"name": "exposure window", "note": f"not measured: no libvirtd ({exc})"}]
    virt = "kvm" if os.access("/dev/kvm", os.R_OK | os.W_OK) else "qemu"
    for net, bridge in NETWORKS.items():  # idempotent, as the integration fixtures do it
        try:
            n = conn.networkLookupByName(net)
        except libvirt.libvirtError:
            n = conn.networkDefineXML(
                f"<network><name>{net}</name><bridge name='{bridge}'/></network>"
            )
        if not n.isActive():
            n.create()
    work = IMAGES / f"{PREFIX}{uuid.uuid4().hex[:8]}"
    work.mkdir(parents=True)
    tmp = Path(tempfile.mkdtemp(prefix="vmwarden-bench-watch-"))
    names: list[str] = []
    events = _Events()
    from_create: list[float] = []
    from_event: list[float] = []
    ahead = 0
    try:
        approved, rogue = work / "approved-base.qcow2", work / "random-download.qcow2"
        for path, size in ((approved, "16M"), (rogue, "24M")):
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), size], check=True)
        from vmwarden.inspect.digest import digest_file

        policy = tmp / "policy.yaml"
        policy.write_text(POLICY.format(digest=digest_file(approved)))
        args = ["-c", URI, "-p", str(policy), "--db", f"sqlite:///{tmp / 'watch.db'}"]
        args += ["--only", f"{PREFIX}*"]
        with daemon(args, tmp / "watch.log", ready_timeout=120) as d:
            for i in range(trials):
                name = f"{PREFIX}expo{i}"
                disk = work / f"rogue{i}.qcow2"
                subprocess.run(
                    [
                        "qemu-img",
                        "create",
                        "-q",
                        "-f",
                        "qcow2",
                        "-F",
                        "qcow2",
                        "-b",
                        str(rogue),
                        str(disk),
                    ],
                    check=True,
                )
                _remove(conn, name)
                names.append(name)
                mac = f"52:54:00:7e:{i // 256:02x}:{i % 256:02x}"
                dom = conn.defineXML(VM_XML.format(virt=virt, name=name, disk=disk, mac=mac))
                t_create = time.monotonic()
                dom.create()
                started_isolated = _nic_state(dom.XMLDesc(0)) == ("quarantine", "down")

                def isolated(dom: Any = dom) -> float | None:
                    if _nic_state(dom.XMLDesc(0)) == ("quarantine", "down"):
                        return time.monotonic()
                    return None

                t_iso = _poll(isolated, timeout=60)
                t_event = _poll(lambda name=name: events.started.get(name), timeout=10, every=0.01)
                with contextlib.suppress(TimeoutError):  # the daemon's entry for this start
                    _poll(lambda name=name: _entry(d, name), timeout=10, every=0.02)
                ahead += started_isolated
                from_create.append(t_iso - t_create)
                from_event.append(max(0.0, t_iso - t_event))
                _remove(conn, name)
            latencies = (d.state() or {}).get("latencies", [])
            daemon_side = [x["seconds"] for x in latencies if x["seconds"] is not None]
        hook_rows = _hook_rows(conn, virt, work, tmp, names, events, approved, rogue, trials)
    except Exception as exc:
        return [{"name": "exposure window", "note": f"not measured: {type(exc).__name__}: {exc}"}]
    finally:
        events.close()
        for name in names:
            _remove(conn, name)
        conn.close()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
    note = f"{virt.upper()}; {ahead}/{trials} already isolated when create() returned"
    rows = [
        _latency_row(
            f"exposure: create() → NIC quarantined+down ({trials} trials)", from_create, note
        ),
        _latency_row(
            "exposure: STARTED event → NIC quarantined+down", from_event, "negative clamped to 0"
        ),
    ]
    if daemon_side:
        name = "watch's own figure: event → quarantined, as /state reports it"
        rows.append(_latency_row(name, daemon_side, f"{len(daemon_side)} of {trials} reported"))
    return rows + hook_rows


def _hook_rows(
    conn: Any, virt: str, work: Path, tmp: Path, names: list[str], events: Any,
    approved: Path, rogue: Path, trials: int,
) -> list[dict[str, Any]]:  # fmt: skip
    """``bench.watch_hook`` with this module's VMs, daemon and rows (3 trials at most: the
    hook is on the shared libvirtd for that long)."""
    from bench import watch_hook
    from vmwarden.inspect.digest import digest_file

    def clone(name: str, base: Path) -> Path:
        disk = work / f"{name}.qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b",
                        str(base), str(disk)], check=True)  # fmt: skip
        return disk

    def define(name: str, disk: Path) -> Any:
        _remove(conn, name)
        names.append(name)
        mac = f"52:54:00:7e:fe:{len(names) % 256:02x}"
        return conn.defineXML(VM_XML.format(virt=virt, name=name, disk=disk, mac=mac))

    ctx = {"conn": conn, "tmp": tmp, "prefix": PREFIX, "uri": URI, "events": events,
           "digest": digest_file(approved), "approved": approved, "rogue": rogue,
           "clone": clone, "define": define}  # fmt: skip
    try:
        return watch_hook.measure(ctx, min(trials, 3), _latency_row, daemon)
    except Exception as exc:
        return [{"name": "exposure with the admission hook",
                 "note": f"not measured: {type(exc).__name__}: {exc}"}]  # fmt: skip


def _entry(d: Daemon, name: str) -> bool:
    return any(x["vm"] == name for x in (d.state() or {}).get("latencies", []))


def _latency_row(name: str, values: list[float], note: str) -> dict[str, Any]:
    s = Sample(name, values)
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return s.to_dict() | {
        "p50_ms": statistics.median(values) * 1000,
        "p95_ms": p95 * 1000,
        "max_ms": ordered[-1] * 1000,
        "note": note,
    }


# -- footprint ---------------------------------------------------------------------------


def _cpu_seconds(pid: int) -> float:
    """utime+stime of ``pid`` and its reaped children (clock ticks → seconds)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def _status(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _libvirtd_pid() -> int | None:
    try:
        out = subprocess.run(
            ["pgrep", "-xo", "libvirtd"], capture_output=True, text=True, check=False
        )
        return int(out.stdout.split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _fleet_uri(fleet_path: Path) -> tuple[str, int | None]:
    """``test+unix://`` (fleet inside libvirtd) when libvirtd answers for it, else ``test://``."""
    pid = _libvirtd_pid()
    if pid is not None:
        probe = subprocess.run(
            ["virsh", "-c", f"test+unix://{fleet_path}", "uri"],
            capture_output=True,
            timeout=600,
            check=False,
        )
        if probe.returncode == 0:
            return f"test+unix://{fleet_path}", pid
    return f"test://{fleet_path}", None


def footprint(fleet_path: Path, policy_text: str, seconds: float) -> list[dict[str, Any]]:
    tmp = Path(tempfile.mkdtemp(prefix="vmwarden-bench-foot-"))
    try:
        policy = tmp / "policy.yaml"
        policy.write_text(policy_text)
        uri, lpid = _fleet_uri(fleet_path)
        args = ["-c", uri, "-p", str(policy), "--db", f"sqlite:///{tmp / 'w.db'}"]
        args += ["--no-enforce", "--allow-unregistered", "--interval", "3600"]
        base = None
        if lpid is not None:  # libvirtd alone over the same window: what it burns anyway
            b0 = _cpu_seconds(lpid)
            time.sleep(seconds)
            base = _cpu_seconds(lpid) - b0
        t0 = time.monotonic()
        with daemon(args, tmp / "watch.log", ready_timeout=600) as d:
            first = time.monotonic() - t0
            time.sleep(5)  # let the first reconcile's aftermath settle (a full collection)
            pid = d.proc.pid
            c0, w0 = _cpu_seconds(pid), time.monotonic()
            l0 = _cpu_seconds(lpid) if lpid is not None else 0.0
            time.sleep(seconds)
            c1, w1 = _cpu_seconds(pid), time.monotonic()
            l1 = _cpu_seconds(lpid) if lpid is not None else 0.0
            rss, hwm = _status(pid, "VmRSS"), _status(pid, "VmHWM")
            sweeps = (d.state() or {}).get("sweeps")
    except Exception as exc:
        return [{"name": "watch footprint", "note": f"not measured: {type(exc).__name__}: {exc}"}]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    n = fleet_path.parent.name.removeprefix("fleet-")
    wall = w1 - w0
    row: dict[str, Any] = {
        "name": f"watch idle on a {n}-VM test-driver fleet, {seconds:.0f} s",
        "cpu_pct": (c1 - c0) / wall * 100,
        "rss": rss,
        "peak_rss": hwm,
    }
    if base is not None:
        row["libvirtd_cpu_pct"] = max(0.0, (l1 - l0) - base) / wall * 100
        where = f"fleet served by libvirtd ({uri}); libvirtd CPU is beyond its own idle"
    else:
        where = "fleet in-process (no libvirtd reachable): RSS includes the test driver"
    row["fleet_in_libvirtd"] = base is not None
    row["note"] = f"start to first reconcile done: {first:.1f} s; sweeps {sweeps}; {where}"
    return [row]

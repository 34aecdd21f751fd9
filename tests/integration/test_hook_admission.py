"""Admission through the real libvirt qemu hook: libvirtd runs ``/etc/libvirt/hooks/qemu``,
which asks an ``AdmissionServer`` (backed by a real ``Decider`` and SQLite store) whether a
VM may start.

Shared libvirtd: the hook is installed with ``--only 'vmw-hook-*'`` so other engineers' VMs
start without asking, libvirtd is *reloaded* (SIGHUP, nothing stops) once per session so it
finds the new hook, and the hook is removed at the end even when a test fails (a removed hook
is simply not run: no restart needed). A foreign hook already there makes these tests skip.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from tests.integration.conftest import (
    IMAGES,
    URI,
    domain_xml,
    make_base,
    make_clone,
    remove_domain,
    vmwarden,
)
from tests.integration.test_watch_real import free_port, reader_token
from vmwarden.connectors.libvirt import hook_install as hooks
from vmwarden.engine.admission import AdmissionServer, Decision
from vmwarden.engine.admission_decider import Decider
from vmwarden.inspect.digest import digest_file
from vmwarden.policy import parse_policy
from vmwarden.store import Store

pytestmark = pytest.mark.libvirtd

PREFIX = "vmw-hook-g-"  # gated: the hook is installed with --only 'vmw-hook-g-*'


class Gate:
    """The admission service under test: restartable, recording which VMs it was asked about."""

    def __init__(self, sock: Path, decider: Decider) -> None:
        self.sock, self.decider = sock, decider
        self.asked: list[str] = []
        self.server: AdmissionServer | None = None

    def decide(self, xml: str) -> Decision:
        answer = self.decider(xml)
        self.asked.append(answer.name or "?")
        return answer

    def start(self) -> None:
        if self.server is None:
            self.server = AdmissionServer(self.sock, self.decide).start_in_thread()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


class Env:
    def __init__(
        self, conn: libvirt.virConnect, virt: str, gate: Gate, images: Path, base: Path, log: Path
    ) -> None:
        self.conn, self.virt, self.gate, self.log = conn, virt, gate, log
        self.images, self.base = images, base
        self.names: list[str] = []

    def define(self, name: str, disk: Path) -> libvirt.virDomain:
        self.remove(name)
        self.names.append(name)
        meta = {"registered": "yes", "owner": "hook-tests"}
        return self.conn.defineXML(domain_xml(name, self.virt, disk, [], meta))

    def clone(self, name: str) -> Path:
        return make_clone(self.base, self.images / f"{name}.qcow2")

    def rogue_image(self, name: str) -> Path:
        return make_base(self.images / f"{name}-rogue.qcow2", "8M")

    def remove(self, name: str) -> None:
        remove_domain(self.conn, name)

    def reinstall(self, unreachable: str, sock: Path | None = None) -> None:
        """Rewrite our hook with another --unreachable (or socket): libvirtd runs the file
        by path on every call, so this needs no reload."""
        vmwarden(
            "hook", "install", "--socket", str(sock or self.gate.sock),
            "--unreachable", unreachable, "--only", f"{PREFIX}*", "--log", str(self.log),
        )  # fmt: skip


def _wait_until_hook_active(conn: libvirt.virConnect, virt: str, gate: Gate, disk: Path) -> None:
    """libvirtd rescans hooks in its reload thread just after SIGHUP: start a probe VM until
    the service is asked about it."""
    name = f"{PREFIX}probe"
    dom = conn.defineXML(domain_xml(name, virt, disk, [], {"registered": "yes"}))
    try:
        deadline = time.monotonic() + 30
        while name not in gate.asked:
            if time.monotonic() > deadline:
                raise AssertionError("libvirtd did not start running the hook after SIGHUP")
            dom.create()
            dom.destroy()
            time.sleep(0.1)
    finally:
        if dom.isActive():
            dom.destroy()
        dom.undefine()


@pytest.fixture(scope="session")
def hook_env(system_conn: libvirt.virConnect, virt_type: str) -> Iterator[Env]:
    if hooks.MAIN_HOOK.exists() and not hooks.is_ours(hooks.MAIN_HOOK):
        pytest.skip(f"{hooks.MAIN_HOOK} belongs to someone else; not touching it")
    images = IMAGES / f"vmw-hook-{uuid.uuid4().hex[:8]}"
    images.mkdir(parents=True)
    run = Path(f"/run/vmw-hook-{os.getpid()}")
    base = make_base(images / "approved-base.qcow2")
    store = Store.open(f"sqlite:///{images / 'vmwarden.db'}")
    # the template's digest is known, as a sweep leaves it: admission never hashes (#11.5)
    store.remember_digest(str(base), base.stat(), digest_file(base))
    policy = parse_policy(
        "version: 1\n"
        f"templates: [{{name: approved-base, digest: '{digest_file(base)}'}}]\n"
        "gate: {deny: [not-approved-template], unreachable: deny}\n"
    )
    # IMAGES is the shared dir pool (IMAGES_POOL): backing files are followed there (#10.3)
    gate = Gate(run / "admission.sock", Decider(store, policy, image_dirs=[IMAGES]))
    env = Env(system_conn, virt_type, gate, images, base, run / "hook.log")
    gate.start()
    policy_file = images / "policy.yaml"
    policy_file.write_text("version: 1\ngate: {deny: [not-approved-template], unreachable: deny}\n")
    try:
        # unreachable comes from the policy file (gate.unreachable: deny)
        done = vmwarden(
            "hook", "install", "--socket", str(gate.sock), "-p", str(policy_file),
            "--only", f"{PREFIX}*", "--log", str(env.log), "--reload-libvirtd",
        )  # fmt: skip
        assert "unreachable: deny" in done.stdout
        _wait_until_hook_active(system_conn, virt_type, gate, env.clone(f"{PREFIX}probe"))
        yield env
    finally:
        for name in env.names:
            env.remove(name)
        gate.stop()
        try:
            vmwarden("hook", "uninstall")
        finally:
            if hooks.is_ours(hooks.MAIN_HOOK):  # the CLI failed: remove it directly
                hooks.MAIN_HOOK.unlink()
            hooks.reload_libvirtd()  # libvirtd forgets the hook entirely, as before the tests
            store.close()
            shutil.rmtree(images, ignore_errors=True)
            shutil.rmtree(run, ignore_errors=True)


def test_vm_from_unapproved_image_is_refused_with_vmwardens_reason(hook_env: Env):
    name = f"{PREFIX}rogue"
    dom = hook_env.define(name, hook_env.rogue_image(name))
    with pytest.raises(libvirt.libvirtError) as refused:
        dom.create()
    message = str(refused.value)
    assert "Hook script execution failed" in message
    assert f"vmwarden: VM '{name}' refused by policy gate: not-approved-template" in message
    assert f"{name}-rogue.qcow2" in message  # the root image the operator must look at
    assert not dom.isActive()
    assert f"denied {name}" in hook_env.log.read_text()


def test_vm_from_approved_template_starts(hook_env: Env):
    name = f"{PREFIX}good"
    dom = hook_env.define(name, hook_env.clone(name))
    dom.create()
    assert dom.isActive()
    assert name in hook_env.gate.asked


def test_unreachable_service_deny_then_allow(hook_env: Env):
    name = f"{PREFIX}orphan"
    dom = hook_env.define(name, hook_env.clone(name))
    hook_env.gate.stop()
    try:
        with pytest.raises(libvirt.libvirtError) as refused:
            dom.create()
        message = str(refused.value)
        assert "vmwarden: could not reach the admission service" in message
        assert "--unreachable deny" in message
        assert not dom.isActive()

        hook_env.reinstall("allow")
        dom.create()
        assert dom.isActive()
        logged = hook_env.log.read_text()
        assert f"start of '{name}' refused (hook installed with --unreachable deny)" in logged
        assert f"start of '{name}' allowed (hook installed with --unreachable allow)" in logged
    finally:
        hook_env.reinstall("deny")
        hook_env.gate.start()


def test_other_vms_are_not_gated(hook_env: Env):
    """--only: a VM outside the glob starts without vmwarden being asked (our tests never
    gate another engineer's VMs), even from an unapproved image."""
    name = "vmw-hook-free"
    dom = hook_env.define(name, hook_env.rogue_image(name))
    dom.create()
    assert dom.isActive()
    assert name not in hook_env.gate.asked


def test_hook_status_reports_the_live_service(hook_env: Env):
    out = vmwarden("hook", "status").stdout
    assert "vmwarden hook" in out
    assert "admission service: answering" in out


FLOOD_POLICY = """\
version: 1
templates: [{{name: approved-base, digest: '{digest}'}}]
gate: {{deny: [not-approved-template]}}
"""


def _flood(
    port: int, stop: threading.Event, answers: list[int], sent: list[int], *, chunked: bool
) -> None:
    """Anonymous POSTs to /api/exceptions of 300 MiB of JSON each (declared by Content-Length,
    or streamed chunked), until told to stop."""
    chunk = b"[" + b"1," * (512 * 1024 - 1)  # 1 MiB
    size = 300 * len(chunk)
    framing = b"Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}".encode()
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=120) as conn:
                conn.sendall(
                    b"POST /api/exceptions HTTP/1.1\r\nHost: x\r\n"
                    b"Content-Type: application/json\r\n" + framing + b"\r\n\r\n"
                )
                try:
                    for _ in range(300):
                        if chunked:
                            conn.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                        else:
                            conn.sendall(chunk)
                        sent.append(len(chunk))
                    if chunked:
                        conn.sendall(b"0\r\n\r\n")
                except OSError:
                    pass  # answered (413) and closed while we were still sending
                response = http.client.HTTPResponse(conn)
                response.begin()
                answers.append(response.status)
        except OSError:
            time.sleep(0.05)


def test_an_http_flood_never_makes_the_gate_allow_a_start_it_denies(hook_env: Env, tmp_path):
    """#11.1: ``watch --listen`` with the admission socket, the hook installed with
    ``--unreachable allow``; while anonymous clients stream huge bodies to the API, a VM the
    gate denies is refused with vmwarden's reason, never let through as "unreachable"."""
    name = f"{PREFIX}flooded"
    dom = hook_env.define(name, hook_env.rogue_image(name))
    policy = tmp_path / "policy.yaml"
    policy.write_text(FLOOD_POLICY.format(digest=digest_file(hook_env.base)))
    db = f"sqlite:///{tmp_path / 'watch.db'}"
    token = reader_token(db)
    sock = hook_env.gate.sock.parent / "watch.sock"
    port = free_port()
    log = tmp_path / "watch.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vmwarden.cli.main", "watch", "-c", URI, "-p", str(policy),
             "--db", db, "--only", f"{PREFIX}*", "--no-enforce", "--no-inspect",
             "--listen", f"127.0.0.1:{port}", "--admission-socket", str(sock)],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    stop, answers, sent = threading.Event(), [], []
    floods = [
        threading.Thread(
            target=_flood, args=(port, stop, answers, sent), kwargs={"chunked": chunked}
        )
        for chunked in (False, False, True)
    ]
    try:

        def swept() -> bool:
            assert proc.poll() is None, log.read_text()
            req = urllib.request.Request(
                f"http://127.0.0.1:{port}/state", headers={"Authorization": f"Bearer {token}"}
            )
            try:
                with urllib.request.urlopen(req, timeout=5) as r:
                    return json.loads(r.read())["sweeps"] >= 1 and sock.exists()
            except OSError:
                return False

        deadline = time.monotonic() + 60
        while not swept():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        hook_env.reinstall("allow", sock)  # the fallback an attacker would want to trigger
        for t in floods:
            t.start()
        while len(sent) < 3:  # the flood is under way
            assert time.monotonic() < deadline + 60, log.read_text()
            time.sleep(0.01)
        # start it again and again while the flood runs: at least 5 times, and on until
        # three flood requests were answered (or 60 s): the flood's bodies are then read
        starts, until = 0, time.monotonic() + 60
        while starts < 5 or (len(answers) < 3 and time.monotonic() < until):
            with pytest.raises(libvirt.libvirtError) as refused:
                dom.create()
            message = str(refused.value)
            assert "could not reach the admission service" not in message
            assert f"vmwarden: VM '{name}' refused by policy gate: not-approved-template" in message
            assert not dom.isActive()
            starts += 1
        assert answers and set(answers) == {413}  # every flood request was cut at the cap
        assert proc.poll() is None
    finally:
        stop.set()
        for t in floods:
            t.join(60)
        hook_env.reinstall("deny")
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

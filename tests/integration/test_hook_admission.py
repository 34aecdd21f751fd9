"""Admission through the real libvirt qemu hook: libvirtd runs ``/etc/libvirt/hooks/qemu``,
which asks an ``AdmissionServer`` (backed by a real ``Decider`` and SQLite store) whether a
VM may start.

Shared libvirtd: the hook is installed with ``--only 'vmw-hook-*'`` so other engineers' VMs
start without asking, libvirtd is *reloaded* (SIGHUP, nothing stops) once per session so it
finds the new hook, and the hook is removed at the end even when a test fails (a removed hook
is simply not run: no restart needed). A foreign hook already there makes these tests skip.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from tests.integration.conftest import (
    IMAGES,
    domain_xml,
    make_base,
    make_clone,
    remove_domain,
    vmwarden,
)
from vmwarden.engine.admission import AdmissionServer, Decision
from vmwarden.engine.admission_decider import Decider
from vmwarden.hooks import install as hooks
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

    def reinstall(self, unreachable: str) -> None:
        """Rewrite our hook with another --unreachable: libvirtd runs the file by path on
        every call, so this needs no reload."""
        vmwarden(
            "hook", "install", "--socket", str(self.gate.sock), "--unreachable", unreachable,
            "--only", f"{PREFIX}*", "--log", str(self.log),
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
    policy = parse_policy(
        "version: 1\n"
        f"templates: [{{name: approved-base, digest: '{digest_file(base)}'}}]\n"
        "gate: {deny: [not-approved-template], unreachable: deny}\n"
    )
    gate = Gate(run / "admission.sock", Decider(store, policy))
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

"""#10.8: ``hook status`` right after ``hook install --reload-libvirtd`` agrees with it, and
libvirtd really runs the hook by then — against the real libvirtd.

Before, status compared the hook file's mtime with libvirtd's start, so a hook made active
by a reload (SIGHUP, the process keeps its start time) was reported as "started before the
hook was written; it uses the hook only if reloaded", just after install said it reloaded.
Now the reload waits until libvirtd has rescanned and records it; status reads that record.

Shared libvirtd: our hook is the drop-in (``qemu.d/vmwarden``, not the main hook the
admission tests use), gates only ``vmw-b-hs-*`` VMs, and is removed at the end.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from tests.integration.conftest import remove_domain, vmwarden
from vmwarden.connectors.libvirt import hook_install as hooks
from vmwarden.engine.admission import AdmissionServer, Decision

pytestmark = pytest.mark.libvirtd

PREFIX = "vmw-b-hs-"


@pytest.fixture
def gate() -> Iterator[tuple[Path, list[str]]]:
    asked: list[str] = []

    def decide(xml: str) -> Decision:
        asked.append(xml)
        if PREFIX in xml:
            return Decision("deny", "vmwarden: refused by the vmw-b hook-status test")
        return Decision("allow")

    run = Path(f"/run/{PREFIX}{os.getpid()}")
    srv = AdmissionServer(run / "admission.sock", decide).start_in_thread()
    try:
        yield run / "admission.sock", asked
    finally:
        srv.stop()
        shutil.rmtree(run, ignore_errors=True)


def test_status_right_after_install_reload_says_libvirtd_uses_it(
    system_conn: libvirt.virConnect, virt_type: str, gate: tuple[Path, list[str]]
) -> None:
    if hooks.DROP_IN.exists() and not hooks.is_ours(hooks.DROP_IN):
        pytest.skip(f"{hooks.DROP_IN} belongs to someone else; not touching it")
    sock, asked = gate
    name = f"{PREFIX}probe"
    remove_domain(system_conn, name)
    dom = system_conn.defineXML(
        f"<domain type='{virt_type}'><name>{name}</name><memory unit='MiB'>32</memory>"
        "<os><type arch='x86_64'>hvm</type></os></domain>"
    )
    try:
        done = vmwarden(
            "hook", "install", "--drop-in", "--socket", str(sock), "--unreachable", "deny",
            "--only", f"{PREFIX}*", "--log", str(sock.parent / "hook.log"), "--reload-libvirtd",
        )  # fmt: skip
        assert "libvirtd reloaded: the hook is active" in done.stdout
        status = vmwarden("hook", "status", "--drop-in")
        assert "uses the hook (reloaded by vmwarden at" in status.stdout, status.stdout
        assert "started before the hook was written" not in status.stdout
        assert "admission service: answering" in status.stdout
        assert "unsafe" not in status.stderr
        # And it is true at once: no retry, the very first start is asked and refused.
        with pytest.raises(libvirt.libvirtError) as refused:
            dom.create()
        assert "vmwarden: refused by the vmw-b hook-status test" in str(refused.value)
        assert any(name in xml for xml in asked)
    finally:
        remove_domain(system_conn, name)
        vmwarden("hook", "uninstall", "--drop-in", check=False)
        if hooks.is_ours(hooks.DROP_IN):
            hooks.DROP_IN.unlink()
        hooks.reload_libvirtd()

"""The hook client (``connectors.libvirt.hook_qemu``) as libvirtd runs it, and its installer, on
temporary paths: real processes, a real admission server, the real rendered ``/bin/sh`` file."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from vmwarden.connectors.libvirt import hook_install as hooks
from vmwarden.connectors.libvirt import hook_qemu as qemu
from vmwarden.engine.admission import AdmissionServer, Decision

XML = b"<domain><name>web</name></domain>"


def decide(xml: str) -> Decision:
    if "rogue" in xml:
        return Decision("deny", "vmwarden: VM 'rogue' refused by policy gate: not-approved")
    if "stray" in xml:
        return Decision("allow", "vmwarden: held", hold=True)
    return Decision("allow")


@pytest.fixture
def served(tmp_path: Path):
    path = tmp_path / "adm.sock"
    srv = AdmissionServer(path, decide).start_in_thread()
    yield path
    srv.stop()


def run_hook(
    sock: Path, log: Path, *args: str, xml: bytes = XML, unreachable: str = "allow"
) -> subprocess.CompletedProcess[bytes]:
    opts = ["--socket", str(sock), "--unreachable", unreachable, "--log", str(log), "--"]
    return subprocess.run(
        [sys.executable, "-I", "-m", "vmwarden.connectors.libvirt.hook_qemu", *opts, *args],
        input=xml,
        capture_output=True,
        timeout=60,
        check=False,
    )


def test_prepare_allow_deny_hold(served: Path, tmp_path: Path):
    log = tmp_path / "hook.log"
    ok = run_hook(served, log, "web", "prepare", "begin", "-")
    assert (ok.returncode, ok.stdout, ok.stderr) == (0, b"", b"")
    no = run_hook(served, log, "rogue", "prepare", "begin", "-", xml=b"<domain>rogue</domain>")
    assert no.returncode == qemu.EXIT_DENY
    assert no.stdout == b""
    assert no.stderr == b"vmwarden: VM 'rogue' refused by policy gate: not-approved\n"
    held = run_hook(served, log, "stray", "prepare", "begin", "-", xml=b"<d>stray</d>")
    assert (held.returncode, held.stdout) == (0, b"")
    text = log.read_text()
    assert "denied rogue" in text
    assert "allowed stray on hold" in text
    assert "web" not in text  # plain allows are not logged


@pytest.mark.parametrize("op", ["start", "started", "stopped", "release", "reconnect", "migrate"])
def test_other_operations_pass_without_asking(tmp_path: Path, op: str):
    """Even with nothing listening and --unreachable deny: e.g. a failing reconnect would make
    libvirtd kill a running VM, and migrate/restore read stdout as XML."""
    proc = run_hook(tmp_path / "none.sock", tmp_path / "log", "web", op, "begin", "-",
                    unreachable="deny")  # fmt: skip
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, b"", b"")
    assert not (tmp_path / "log").exists()


def test_unreachable_deny_and_allow_are_logged(tmp_path: Path):
    log = tmp_path / "hook.log"
    missing = tmp_path / "nobody-home.sock"
    denied = run_hook(missing, log, "web", "prepare", "begin", "-", unreachable="deny")
    assert denied.returncode == qemu.EXIT_DENY
    assert b"could not reach the admission service" in denied.stderr
    assert b"--unreachable deny" in denied.stderr
    allowed = run_hook(missing, log, "web", "prepare", "begin", "-", unreachable="allow")
    assert (allowed.returncode, allowed.stderr) == (0, b"")
    lines = log.read_text().splitlines()
    assert len(lines) == 2
    assert "refused (hook installed with --unreachable deny)" in lines[0]
    assert "allowed (hook installed with --unreachable allow)" in lines[1]
    assert str(missing) in lines[1]


def test_a_server_that_never_answers_is_unreachable(tmp_path: Path):
    """A listener that accepts and says nothing: the hook gives up after its timeout."""
    path = tmp_path / "mute.sock"
    mute = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    mute.bind(str(path))
    mute.listen(1)
    accepted: list[socket.socket] = []
    t = threading.Thread(target=lambda: accepted.append(mute.accept()[0]), daemon=True)
    t.start()
    try:
        with pytest.raises(qemu.Unreachable, match="no answer"):
            qemu.ask(str(path), XML, timeout=0.3)
    finally:
        t.join(5)
        for s in accepted:
            s.close()
        mute.close()


def test_garbage_answer_is_unreachable(tmp_path: Path):
    path = tmp_path / "liar.sock"
    liar = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    liar.bind(str(path))
    liar.listen(1)

    def answer() -> None:
        conn, _ = liar.accept()
        conn.recv(65536)
        conn.sendall(b'{"decision": "maybe"}\n')
        conn.close()

    t = threading.Thread(target=answer, daemon=True)
    t.start()
    try:
        with pytest.raises(qemu.Unreachable, match="unexpected answer"):
            qemu.ask(str(path), XML, timeout=5)
    finally:
        t.join(5)
        liar.close()


# -- installer ---------------------------------------------------------------------------------


def test_rendered_script_runs_as_libvirtd_would(served: Path, tmp_path: Path):
    hook = tmp_path / "hooks" / "qemu"
    log = tmp_path / "hook.log"
    assert hooks.install(socket=str(served), unreachable="deny", path=hook, log=str(log)) is False
    assert stat.S_IMODE(hook.stat().st_mode) == 0o755
    assert hooks.is_ours(hook)
    assert hooks.settings_of(hook.read_text()) == {
        "python": hooks.SYSTEM_PYTHON,
        "socket": str(served),
        "unreachable": "deny",
        "log": str(log),
    }
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", "HOME": "/root"}
    ok = subprocess.run([str(hook), "web", "prepare", "begin", "-"], input=XML,
                        capture_output=True, env=env, check=False, timeout=60)  # fmt: skip
    assert (ok.returncode, ok.stderr) == (0, b"")
    no = subprocess.run([str(hook), "rogue", "prepare", "begin", "-"], input=b"<d>rogue</d>",
                        capture_output=True, env=env, check=False, timeout=60)  # fmt: skip
    assert no.returncode == 1
    assert b"refused by policy gate" in no.stderr


def test_only_glob_lets_other_vms_pass(tmp_path: Path):
    hook = tmp_path / "qemu"
    hooks.install(socket=str(tmp_path / "none.sock"), unreachable="deny", path=hook,
                  log=str(tmp_path / "log"), only="vmw-hook-*")  # fmt: skip
    other = subprocess.run([str(hook), "prod-db", "prepare", "begin", "-"], input=XML,
                           capture_output=True, check=False, timeout=60)  # fmt: skip
    assert other.returncode == 0
    mine = subprocess.run([str(hook), "vmw-hook-x", "prepare", "begin", "-"], input=XML,
                          capture_output=True, check=False, timeout=60)  # fmt: skip
    assert mine.returncode == 1
    assert hooks.settings_of(hook.read_text())["only"] == "vmw-hook-*"
    with pytest.raises(hooks.HookError, match="invalid --only"):
        hooks.render(socket="/s", unreachable="deny", only="x;rm -rf /")


def test_foreign_hook_is_never_touched(tmp_path: Path):
    hook = tmp_path / "qemu"
    hook.write_text("#!/bin/sh\n# someone else's\nexit 0\n")
    before = hook.read_text()
    with pytest.raises(hooks.HookError, match="not installed by vmwarden"):
        hooks.install(socket="/s", unreachable="allow", path=hook)
    with pytest.raises(hooks.HookError, match="leaving it alone"):
        hooks.uninstall(hook)
    assert hook.read_text() == before


def test_reinstall_replaces_ours_and_uninstall_removes_it(tmp_path: Path):
    hook = tmp_path / "qemu"
    assert hooks.install(socket="/a", unreachable="allow", path=hook) is False
    assert hooks.install(socket="/b", unreachable="deny", path=hook) is True
    assert hooks.settings_of(hook.read_text())["socket"] == "/b"
    assert [p.name for p in tmp_path.iterdir()] == ["qemu"]  # no temp file left behind
    assert hooks.uninstall(hook) is True
    assert not hook.exists()
    assert hooks.uninstall(hook) is False


def test_bad_unreachable_value(tmp_path: Path):
    with pytest.raises(hooks.HookError, match="valid: allow, deny"):
        hooks.install(socket="/s", unreachable="maybe", path=tmp_path / "qemu")


def test_status_of_our_hook(tmp_path: Path):
    hook = tmp_path / "qemu"
    assert hooks.status(hook).exists is False
    hooks.install(socket="/s", unreachable="allow", path=hook)
    st = hooks.status(hook)
    assert (st.exists, st.ours, st.settings["socket"]) == (True, True, "/s")
    assert st.unsafe is None
    # Not where libvirtd looks for hooks: never "used", however old or reloaded.
    assert st.libvirtd_sees_it is None
    os.utime(hook, (0, 0))
    assert hooks.status(hook).libvirtd_sees_it is None

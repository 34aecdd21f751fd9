"""#11.2: libvirtd runs the qemu hook as root, so the hook is root's end to end.

The old hook exec'd ``<installing interpreter> -I -m vmwarden.hooks.qemu``: with an editable
install in a directory another user owned, that user edited ``vmwarden/hooks/__init__.py``
and the next VM start ran it as uid 0. Now the hook is one self-contained file run by the
system interpreter, and ``install`` refuses when anything on its way is not root's. Real
files, real ``chown``/``chmod``, the real system interpreter and a real admission server."""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from vmwarden.connectors.libvirt import hook_install as hooks
from vmwarden.connectors.libvirt import hook_trust as trust
from vmwarden.engine.admission import AdmissionServer, Decision

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="installing a hook needs root")

NOBODY = pwd.getpwnam("nobody").pw_uid
LIBVIRTD_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", "HOME": "/root"}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Path]:
    def decide(xml: str) -> Decision:
        if "rogue" in xml:
            return Decision("deny", "vmwarden: VM 'rogue' refused by policy gate: test")
        return Decision("allow")

    path = tmp_path / "adm.sock"
    srv = AdmissionServer(path, decide).start_in_thread()
    yield path
    srv.stop()


def run(hook: Path, guest: str, op: str, xml: bytes, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(hook), guest, op, "begin", "-"], input=xml, capture_output=True,
                          env=LIBVIRTD_ENV, cwd=cwd, check=False, timeout=60)  # fmt: skip


def test_hook_is_one_root_owned_file_that_never_imports_vmwarden(served: Path, tmp_path: Path):
    """A hostile ``vmwarden`` package in the cwd and on PYTHONPATH is never run: the hook's
    Python is the system interpreter with -I -S, and the client is inlined in the file."""
    evil = tmp_path / "evil"
    (evil / "vmwarden" / "hooks").mkdir(parents=True)
    pwned = tmp_path / "pwned"
    payload = f"open({str(pwned)!r}, 'w').write('ran as root')\n"
    for init in (evil / "vmwarden" / "__init__.py", evil / "vmwarden" / "hooks" / "__init__.py"):
        init.write_text(payload)
    hook = tmp_path / "hooks" / "qemu"
    hooks.install(socket=str(served), unreachable="deny", path=hook, log=str(tmp_path / "log"))
    st = hook.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o755)
    text = hook.read_text()
    assert text.startswith("#!/bin/sh\n")
    assert f"exec {hooks.SYSTEM_PYTHON} -I -S -c " in text
    assert "-m vmwarden" not in text
    env = {**LIBVIRTD_ENV, "PYTHONPATH": str(evil)}
    ok = subprocess.run([str(hook), "web", "prepare", "begin", "-"], input=b"<domain/>",
                        capture_output=True, env=env, cwd=evil, check=False)  # fmt: skip
    assert (ok.returncode, ok.stdout, ok.stderr) == (0, b"", b"")
    no = run(hook, "rogue", "prepare", b"<domain>rogue</domain>", evil)
    assert no.returncode == 1
    assert no.stderr == b"vmwarden: VM 'rogue' refused by policy gate: test\n"
    assert not pwned.exists()
    # The system interpreter cannot even import vmwarden: the client really is inlined.
    probe = subprocess.run([hooks.SYSTEM_PYTHON, "-I", "-S", "-c", "import vmwarden"],
                           capture_output=True, check=False, cwd="/")  # fmt: skip
    assert probe.returncode != 0


def test_other_operations_never_start_python(tmp_path: Path):
    """``reconnect`` failing makes libvirtd kill a running VM: it must not depend on Python,
    so the shell part answers it even when the interpreter is gone."""
    hook = tmp_path / "hooks" / "qemu"
    hooks.install(socket="/nonexistent.sock", unreachable="deny", path=hook)
    broken = tmp_path / "hooks" / "broken"
    broken.write_text(hook.read_text().replace(hooks.SYSTEM_PYTHON, "/nonexistent/python3"))
    broken.chmod(0o755)
    for op in ("reconnect", "started", "stopped", "release", "migrate", "restore"):
        done = run(broken, "web", op, b"<domain/>", tmp_path)
        assert (done.returncode, done.stdout, done.stderr) == (0, b"", b""), op
    assert run(broken, "web", "prepare", b"<domain/>", tmp_path).returncode != 0


def test_corrupt_hook_refuses_the_start_rather_than_waving_it_through(tmp_path: Path):
    hook = tmp_path / "hooks" / "qemu"
    hooks.install(socket="/nonexistent.sock", unreachable="allow", path=hook)
    text = hook.read_text()
    hook.write_text(text[: text.index(f"\n{hooks.PYTHON_PART}\n") + 1])  # cut short
    assert run(hook, "web", "prepare", b"<domain/>", tmp_path).returncode != 0


@pytest.mark.parametrize("how", ["chown-nobody", "o+w", "g+w"])
def test_refuses_a_hook_directory_another_user_can_change(tmp_path: Path, how: str):
    parent = tmp_path / "shared"
    parent.mkdir(mode=0o755)
    if how == "chown-nobody":
        os.chown(parent, NOBODY, NOBODY)
        expected = f"{parent} is owned by nobody (mode 0755), not root"
    elif how == "o+w":
        parent.chmod(0o757)
        expected = f"{parent} is writable by others (owner root, mode 0757)"
    else:
        parent.chmod(0o775)
        expected = f"{parent} is writable by its group (owner root, mode 0775)"
    hook = parent / "hooks" / "qemu"
    with pytest.raises(hooks.HookError, match="refusing to install the hook") as refused:
        hooks.install(socket="/s", unreachable="allow", path=hook)
    assert expected in str(refused.value)
    assert not hook.exists()
    assert list((parent / "hooks").iterdir()) == []  # not even a temporary file


def test_refuses_an_interpreter_reached_through_a_symlink_in_a_users_directory(tmp_path: Path):
    """/root-owned/bin/python3 -> ../users/python3 -> /usr/bin/python3: the link in the
    user's directory could be pointed anywhere, so the chain is refused there."""
    users = tmp_path / "users"
    users.mkdir()
    (users / "python3").symlink_to(hooks.SYSTEM_PYTHON)
    os.chown(users, NOBODY, NOBODY)
    root_bin = tmp_path / "bin"
    root_bin.mkdir()
    (root_bin / "python3").symlink_to("../users/python3")
    with pytest.raises(hooks.HookError, match=f"{users} is owned by nobody"):
        hooks.install(socket="/s", unreachable="allow", path=tmp_path / "hooks" / "qemu",
                      python=str(root_bin / "python3"))  # fmt: skip
    # The same symlinks in root's own directories are fine.
    os.chown(users, 0, 0)
    hook = tmp_path / "hooks" / "qemu"
    hooks.install(socket="/s", unreachable="allow", path=hook, python=str(root_bin / "python3"))
    assert hooks.settings_of(hook.read_text())["python"] == str(root_bin / "python3")


def test_refuses_an_interpreter_writable_by_others(tmp_path: Path):
    own = tmp_path / "py"
    own.mkdir()
    python = own / "python3"
    python.write_bytes(Path(hooks.SYSTEM_PYTHON).resolve().read_bytes())
    python.chmod(0o757)
    with pytest.raises(hooks.HookError, match=f"{python} is writable by others"):
        hooks.install(socket="/s", unreachable="allow", path=tmp_path / "hooks" / "qemu",
                      python=str(python))  # fmt: skip


def test_check_path_walks_every_component_of_a_symlink_target(tmp_path: Path):
    """A chain of links: the directory holding the *middle* link is checked too."""
    middle = tmp_path / "middle"
    middle.mkdir()
    (middle / "link").symlink_to(hooks.SHELL)
    (tmp_path / "first").symlink_to(middle / "link")
    assert trust.check_path(tmp_path / "first") == os.path.realpath(hooks.SHELL)
    middle.chmod(0o777)
    with pytest.raises(trust.UnsafePath, match=f"{middle} is writable by others"):
        trust.check_path(tmp_path / "first")


def test_status_flags_a_hook_that_is_no_longer_roots(tmp_path: Path):
    hook = tmp_path / "hooks" / "qemu"
    hooks.install(socket="/s", unreachable="allow", path=hook)
    assert hooks.status(hook).unsafe is None
    os.chown(hook, NOBODY, NOBODY)
    assert f"{hook} is owned by nobody" in str(hooks.status(hook).unsafe)
    hook.write_text(
        '#!/bin/sh\n# vmwarden-managed-hook v1: old\n[ "$2" = prepare ] || exit 0\n'
        'exec /venv/bin/python -I -m vmwarden.hooks.qemu --socket /s -- "$@"\n'
    )
    os.chown(hook, 0, 0)
    assert "older vmwarden" in str(hooks.status(hook).unsafe)


def test_cli_refusal_is_a_clear_error_and_writes_nothing(tmp_path: Path):
    """Through the real CLI: exit 2, the offending directory and its owner named, no
    traceback, and no hook file appears (the check runs before anything is written)."""
    users = tmp_path / "users"
    users.mkdir()
    (users / "python3").symlink_to(hooks.SYSTEM_PYTHON)
    os.chown(users, NOBODY, NOBODY)
    before = hooks.DROP_IN.exists() and hooks.DROP_IN.read_bytes()
    done = subprocess.run(
        [sys.executable, "-m", "vmwarden.cli.main", "hook", "install", "--drop-in",
         "--only", "vmw-b-never-*", "--python", str(users / "python3")],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert f"refusing to install the hook: {users} is owned by nobody" in done.stderr
    assert "Traceback" not in done.stderr
    assert (hooks.DROP_IN.exists() and hooks.DROP_IN.read_bytes()) == before

"""Hostile images: each is uninspectable (InspectError) or a fact left unknown — never a crash,
a hang, or a read of a host file. Run both in-process and through the sandboxed pool."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.inspect.conftest import KEY, OS_RELEASE, GuestImages, build_tree_image, qemu_img
from vmwarden.errors import InspectError
from vmwarden.inspect.facts import inspect_image
from vmwarden.inspect.sandbox import InspectorPool


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InspectorPool]:
    with InspectorPool(workers=2, timeout=60, allowed_dirs=None, fingerprint_key=KEY) as p:
        yield p


def _both(path: Path, pool: InspectorPool, allowed: list[Path]) -> list[str]:
    """The InspectError messages of an in-process and a sandboxed inspection."""
    messages = []
    with pytest.raises(InspectError) as local:
        inspect_image(path, allowed_dirs=allowed, fingerprint_key=KEY)
    messages.append(str(local.value))
    sandboxed = InspectorPool(workers=1, timeout=60, allowed_dirs=allowed, fingerprint_key=KEY)
    with sandboxed, pytest.raises(InspectError) as remote:
        sandboxed.inspect(path)
    messages.append(str(remote.value))
    return messages


def test_random_bytes(tmp_path: Path, pool: InspectorPool) -> None:
    path = tmp_path / "noise.img"
    path.write_bytes(os.urandom(4 * 1024 * 1024))
    for message in _both(path, pool, [tmp_path]):
        assert "no filesystem" in message or "cannot read disk" in message


def test_truncated_qcow2(tmp_path: Path, guest_images: GuestImages, pool: InspectorPool) -> None:
    path = tmp_path / "truncated.qcow2"
    data = guest_images.qcow2.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    for message in _both(path, pool, [tmp_path]):
        # The header is intact; the data clusters are gone, and with them the filesystem.
        assert "no filesystem" in message or "truncated" in message


def test_truncated_qcow2_header(tmp_path: Path, guest_images: GuestImages) -> None:
    path = tmp_path / "stub.qcow2"
    path.write_bytes(guest_images.qcow2.read_bytes()[:40])
    with pytest.raises(InspectError, match="truncated qcow2 header"):
        inspect_image(path, allowed_dirs=[tmp_path], fingerprint_key=KEY)


def test_backing_file_pointing_at_etc_shadow_is_never_opened(
    tmp_path: Path, opened: list[str], pool: InspectorPool
) -> None:
    path = tmp_path / "evil.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", "-u", "-b", "/etc/shadow", "-F", "raw", path, "64M")
    for message in _both(path, pool, [tmp_path]):
        assert "outside allowed directories" in message
    assert not [p for p in opened if os.path.realpath(p) == "/etc/shadow"]


def test_guest_symlink_loop_leaves_the_fact_unknown(tmp_path: Path, pool: InspectorPool) -> None:
    """A loop on /etc/os-release makes the OS unknown (with the reason); it must not hang,
    and the rest of the guest is still read."""
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "var").mkdir()
    (tree / "etc/hostname").write_text("looper\n")
    (tree / "etc/os-release").symlink_to("/etc/loop-a")
    (tree / "etc/loop-a").symlink_to("/etc/loop-b")
    (tree / "etc/loop-b").symlink_to("loop-a")
    (tree / "etc/self").symlink_to("self")
    (tree / "etc/ssh").mkdir()
    (tree / "etc/ssh/sshd_config").symlink_to("/etc/ssh/sshd_config")
    image = build_tree_image(tmp_path, tree)
    for facts in (
        inspect_image(image, allowed_dirs=[tmp_path], fingerprint_key=KEY),
        pool.inspect(image),
    ):
        assert facts.hostname == "looper"
        assert facts.os_name is None
        assert facts.sshd is None
        assert any(e.startswith("os:") for e in facts.errors)
        assert any(e.startswith("sshd:") for e in facts.errors)


def test_guest_symlink_to_an_absolute_host_path_resolves_in_the_guest(
    tmp_path: Path, opened: list[str], pool: InspectorPool
) -> None:
    """/etc/os-release → /<host tmp>/marker: the host's marker file is never read; when the
    guest has a file at that same path, that guest file is what is read."""
    marker = tmp_path / "host" / "os-release"
    marker.parent.mkdir()
    marker.write_text("ID=hostmarker-7f3a\nVERSION_ID=hostversion-5c1e\n")
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "var").mkdir()
    (tree / "etc/os-release").symlink_to(str(marker))
    (tree / "etc/passwd").symlink_to("/etc/shadow")  # not the host's shadow either
    (tree / "etc/shadow").write_text("root:*:19000:0:99999:7:::\n")
    dangling = build_tree_image(tmp_path, tree, "dangling.qcow2")
    inside = tree / str(marker).lstrip("/")
    inside.parent.mkdir(parents=True)
    inside.write_text(OS_RELEASE.replace("ID=debian", "ID=guestos"))
    shadowed = build_tree_image(tmp_path, tree, "shadowed.qcow2")
    opened.clear()  # from here on, only the inspections
    for image in (dangling, shadowed):
        results = [
            inspect_image(image, allowed_dirs=[tmp_path], fingerprint_key=KEY),
            pool.inspect(image),
        ]
        for facts in results:
            text = str(facts.to_dict())
            # the host file's values are words: a number could occur in any id or inode
            assert "hostmarker" not in text and "hostversion-5c1e" not in text
            # passwd → /etc/shadow is the guest's shadow: one "user" named root, no hash.
            assert [u.name for u in facts.users or []] in ([], ["root"])
            if image is shadowed:
                assert facts.os_name == "guestos"
            else:
                assert facts.os_name is None
    assert str(marker) not in opened


def test_luks_is_a_fact_not_an_error(tmp_path: Path, pool: InspectorPool) -> None:
    assert shutil.which("cryptsetup"), "cryptsetup missing: scripts/install-deps.sh installs it"
    path = tmp_path / "secret.img"
    with path.open("wb") as f:
        f.truncate(32 * 1024 * 1024)
    key = tmp_path / "key"
    key.write_text("not-a-real-secret")
    subprocess.run(
        [
            "cryptsetup",
            "luksFormat",
            "--batch-mode",
            "--type",
            "luks2",
            "--pbkdf",
            "pbkdf2",
            "--pbkdf-force-iterations",
            "1000",
            "--key-file",
            str(key),
            str(path),
        ],
        check=True,
        capture_output=True,
    )
    qcow = tmp_path / "secret.qcow2"
    qemu_img("convert", "-q", "-f", "raw", "-O", "qcow2", path, qcow)
    for image in (path, qcow):
        for facts in (
            inspect_image(image, allowed_dirs=[tmp_path], fingerprint_key=KEY),
            pool.inspect(image),
        ):
            assert facts.encrypted is True
            assert facts.os_name is None

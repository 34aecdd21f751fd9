"""GuestFiles answering lstat/read_bytes from directory reads (``by_listing``, the OVAL
evaluator's route, #15.1 performance) gives what dissect's lookups by path give, on the real
Debian image, and looks few paths up by path (each lookup re-parses every directory on it)."""

from __future__ import annotations

import posixpath
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.scap.conftest import DEBIAN11_OVAL
from tests.scap.oval_reference import xccdf_defaults
from vmwarden.inspect.disk import open_guest
from vmwarden.inspect.guest.files import GuestFiles
from vmwarden.inspect.opener import open_disk
from vmwarden.scap.oval import load_oval
from vmwarden.scap.oval_eval import Evaluator

TRICKY = [
    "/etc/passwd",
    "/etc/os-release",  # a relative link to ../usr/lib/os-release
    "/bin/sh",  # /bin is a link to usr/bin (merged /usr)
    "/lib/x86_64-linux-gnu",
    "/sbin/nologin-not-there",
    "/etc/passwd/below-a-file",
    "/no/such/dir/file",
    "/etc//passwd",
    "/etc/../etc/shadow",
    "/etc/ssh/sshd_config",
    "/usr/lib/os-release",
    "/var/log",
    "/",
]


class CountingFs:
    """The real dissect filesystem, counting lookups by path (``path``/``get``)."""

    def __init__(self, fs: Any) -> None:
        self._fs = fs
        self.lookups = 0

    def path(self, p: str) -> Any:
        self.lookups += 1
        return self._fs.path(p)

    def get(self, p: str) -> Any:
        self.lookups += 1
        return self._fs.get(p)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fs, name)


@pytest.fixture
def debian_fs(debian_image: Path) -> Iterator[Any]:
    with open_disk(str(debian_image), allowed_dirs=None) as disk:
        guest = open_guest([(la.fd, la.format) for la in disk.layers], name="debian")
        yield guest.target.fs


def _same(a: Any, b: Any) -> tuple[Any, ...] | None:
    if a is None:
        return None
    size = None if stat.S_ISDIR(a.st_mode) else a.st_size
    return (a.st_mode, a.st_uid, a.st_gid, size)


def _both(by_path: GuestFiles, listed: GuestFiles, path: str) -> None:
    assert _same(listed.lstat(path), None) == _same(by_path.lstat(path), None), path
    try:
        want: Any = by_path.read_bytes(path, limit=1 << 20)
    except Exception as exc:  # the same kind of failure is what matters
        want = type(exc)
    try:
        got: Any = listed.read_bytes(path, limit=1 << 20)
    except Exception as exc:
        got = type(exc)
    assert got == want, path


def test_lookups_by_listing_answer_as_dissect_by_path(debian_fs: Any) -> None:
    by_path, listed = GuestFiles(debian_fs), GuestFiles(debian_fs, by_listing=True)
    for path in TRICKY:
        _both(by_path, listed, path)
    checked, stack = 0, ["/etc", "/usr/lib/systemd", "/var", "/usr/sbin"]
    while stack:
        d = stack.pop()
        for name in GuestFiles(debian_fs).listdir(d) or []:
            p = posixpath.join(d, name)
            _both(by_path, listed, p)
            checked += 1
            st = by_path.lstat(p)
            if st is not None and stat.S_ISDIR(st.st_mode):
                stack.append(p)
    assert checked > 400


def test_the_oval_evaluation_looks_few_paths_up_by_path(debian_fs: Any) -> None:
    doc = load_oval(DEBIAN11_OVAL)
    external = xccdf_defaults(DEBIAN11_OVAL.with_name("ssg-debian11-xccdf.xml"))
    counting = CountingFs(debian_fs)
    ev = Evaluator(doc, GuestFiles(counting, by_listing=True), external)
    listed = {i: ev.definition(i).result for i in doc.definitions}
    plain = Evaluator(doc, GuestFiles(debian_fs), external)
    assert listed == {i: plain.definition(i).result for i in doc.definitions}
    # by path, the same evaluation made 135 lookups; left: links followed, mount points
    assert counting.lookups < 60, counting.lookups

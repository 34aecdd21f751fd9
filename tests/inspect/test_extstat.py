"""The ext inode fast path (mode, uid, gid, size at fixed offsets) against dissect's own stat,
on every entry of the real Debian image."""

from __future__ import annotations

import posixpath
import stat
from pathlib import Path

from vmwarden.inspect.disk import open_guest
from vmwarden.inspect.guest.extstat import ext_lstat, ext_scan
from vmwarden.inspect.opener import open_disk


def test_every_entry_of_the_debian_image_reads_as_dissect_reads_it(debian_image: Path) -> None:
    with open_disk(str(debian_image), allowed_dirs=None) as disk:
        guest = open_guest([(la.fd, la.format) for la in disk.layers], name="debian")
        fs = guest.target.fs
        checked, stack = 0, ["/"]
        while stack:
            directory = stack.pop()
            for entry in fs.get(directory).scandir():
                layer = entry.entry[0]
                want = layer.stat(follow_symlinks=False)
                got = ext_lstat(layer)
                assert got is not None, posixpath.join(directory, entry.name)
                assert (got.st_mode, got.st_uid, got.st_gid) == (
                    want.st_mode,
                    want.st_uid,
                    want.st_gid,
                ), posixpath.join(directory, entry.name)
                if not stat.S_ISDIR(want.st_mode):
                    assert got.st_size == want.st_size
                checked += 1
                if stat.S_ISDIR(want.st_mode):
                    stack.append(posixpath.join(directory, entry.name))
    assert checked > 5000


def test_an_entry_that_is_not_ext_is_left_to_dissect() -> None:
    assert ext_lstat(object()) is None


def test_ext_scan_lists_every_directory_as_dissect_lists_it(debian_image: Path) -> None:
    """The struct-parsed directory listing (names, inode stats) equals dissect.target's
    scandir on every directory of the Debian image; links and mounts are left to dissect."""
    with open_disk(str(debian_image), allowed_dirs=None) as disk:
        guest = open_guest([(la.fd, la.format) for la in disk.layers], name="debian")
        fs = guest.target.fs
        listed, stack = 0, ["/etc", "/usr", "/var"]
        while stack:
            directory = stack.pop()
            here = fs.get(directory)
            fast = ext_scan(here)
            assert fast is not None, directory
            want = {e.name: e.entry[0].stat(follow_symlinks=False) for e in here.scandir()}
            assert sorted(n for n, _, _ in fast) == sorted(want), directory
            for name, _node, st in fast:
                w = want[name]
                assert (st.st_mode, st.st_uid, st.st_gid) == (w.st_mode, w.st_uid, w.st_gid)
                if stat.S_ISDIR(st.st_mode):
                    stack.append(posixpath.join(directory, name))
            listed += 1
        assert ext_scan(fs.get("/bin")) is None  # a link (merged /usr): dissect resolves it
    assert listed > 500

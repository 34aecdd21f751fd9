"""The ext inode fast path (mode, uid, gid, size at fixed offsets) against dissect's own stat,
on every entry of the real Debian image."""

from __future__ import annotations

import posixpath
import stat
from pathlib import Path

from vmwarden.inspect.disk import open_guest
from vmwarden.inspect.guest.extstat import ext_lstat
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

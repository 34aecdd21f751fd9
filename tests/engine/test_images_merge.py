"""--images discoveries merge only with this machine's records of the same path."""

from __future__ import annotations

from vmwarden.engine.images import merge_discovered
from vmwarden.model import Image


def test_a_local_file_never_merges_into_a_remote_hosts_image_of_that_path() -> None:
    remote = Image(path="/srv/img/web.qcow2", host="hv-b", attached_to=["vm-b"], mode=None)
    local_known = Image(path="/srv/img/db.qcow2", host="here", attached_to=["vm-a"])
    found = [
        Image(path="/srv/img/web.qcow2", host="here", mode=0o644, size=10),
        Image(path="/srv/img/db.qcow2", host="here", mode=0o600, size=20),
    ]
    out = merge_discovered([remote, local_known], found, {"here"})
    assert remote.mode is None and remote.size is None  # host B's file: not this one
    assert local_known.mode == 0o600 and local_known.size == 20
    web = [i for i in out if i.path == "/srv/img/web.qcow2"]
    assert sorted(i.host for i in web) == ["here", "hv-b"]
    assert len(out) == 3

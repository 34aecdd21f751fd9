"""The OVAL evaluator in the sandboxed worker on the real Debian qcow2 (dissect, no mount)
gives the same result for every definition as over the mounted root (which
test_oval_openscap pins to OpenSCAP), reading a small part of the image."""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

import pytest

from tests.scap.oval_reference import xccdf_defaults
from vmwarden.errors import InspectError
from vmwarden.inspect.sandbox import InspectorPool
from vmwarden.scap.oval import evaluate, load_oval
from vmwarden.scap.oval_localfs import LocalRootFiles
from vmwarden.scap.oval_worker import HANDLERS, KIND, request_payload

from .conftest import DEBIAN11_OVAL, DEBIAN_IMAGE

XCCDF = DEBIAN11_OVAL.with_name("ssg-debian11-xccdf.xml")


def test_worker_results_equal_the_mounted_roots(debian_root: Path) -> None:
    external = xccdf_defaults(XCCDF)
    local = evaluate(load_oval(DEBIAN11_OVAL), LocalRootFiles(debian_root), external_vars=external)
    payload = request_payload(DEBIAN11_OVAL.read_bytes(), external_vars=external)
    with InspectorPool(
        workers=1, fingerprint_key=secrets.token_bytes(32), handlers=HANDLERS, timeout=300
    ) as pool:
        answer = pool.run(DEBIAN_IMAGE, KIND, payload)
    results = answer["results"]
    assert set(results) == set(local)
    differ = {d: (results[d], local[d].result) for d in local if results[d][0] != local[d].result}
    assert differ == {}
    stats = answer["stats"]
    assert 0 < stats["bytes_read"] < stats["image_bytes"] / 10


def test_a_kind_the_pool_was_not_given_is_refused() -> None:
    pool = InspectorPool(workers=1, fingerprint_key=secrets.token_bytes(32))
    with pool, pytest.raises(InspectError, match="unknown kind 'oval'"):
        pool.run(DEBIAN_IMAGE, KIND, request_payload(b"<x/>"))


def test_content_that_is_not_oval_is_an_error_not_a_crash() -> None:
    pool = InspectorPool(workers=1, fingerprint_key=secrets.token_bytes(32), handlers=HANDLERS)
    with pool, pytest.raises(InspectError, match="OVAL content"):
        pool.run(DEBIAN_IMAGE, KIND, request_payload(b"<not-oval/>"))


def _two_filesystem_disk(work: Path) -> Path:
    """GPT raw disk: root ext4 whose fstab mounts a second ext4 on /var (by UUID)."""
    root, var = work / "root", work / "var"
    (root / "etc").mkdir(parents=True)
    (root / "var").mkdir()
    (var / "log").mkdir(parents=True)
    uuid = "6f1d0b52-4a77-4c43-9d2e-0c2d6f3e8a11"
    (root / "etc/fstab").write_text(f"UUID={uuid} /var ext4 defaults 0 2\n")
    (root / "etc/os-release").write_text('ID=debian\nVERSION_ID="12"\n')
    (var / "log/marker").write_text("in the /var filesystem\n")
    (var / "log/marker").chmod(0o600)
    for tree, extra in ((root, []), (var, ["-U", uuid])):
        subprocess.run(
            ["mkfs.ext4", "-q", "-F", "-d", tree, *extra, work / f"{tree.name}.img", "24M"],
            check=True,
        )
    disk = work / "disk.raw"
    with disk.open("wb") as fh:
        fh.truncate(64 << 20)
    table = "label: gpt\nstart=2048, size=49152\nstart=53248, size=49152\n"
    subprocess.run(["sfdisk", "-q", disk], input=table.encode(), check=True)
    with disk.open("r+b") as fh:
        for img, sector in ((work / "root.img", 2048), (work / "var.img", 53248)):
            fh.seek(sector * 512)
            fh.write(img.read_bytes())
    return disk


OVAL_VAR_LOG = """<?xml version="1.0"?>
<oval_definitions xmlns="http://oval.mitre.org/XMLSchema/oval-definitions-5"
 xmlns:unix="http://oval.mitre.org/XMLSchema/oval-definitions-5#unix">
<definitions><definition id="oval:t:def:1" class="compliance" version="1">
<criteria><criterion test_ref="oval:t:tst:1"/></criteria></definition></definitions>
<tests><unix:file_test id="oval:t:tst:1" check="all" check_existence="all_exist" version="1">
<unix:object object_ref="oval:t:obj:1"/><unix:state state_ref="oval:t:ste:1"/>
</unix:file_test></tests>
<objects><unix:file_object id="oval:t:obj:1" version="1">
<unix:behaviors recurse="directories" recurse_direction="down" max_depth="-1"/>
<unix:path>/var</unix:path><unix:filename>marker</unix:filename></unix:file_object></objects>
<states><unix:file_state id="oval:t:ste:1" version="1">
<unix:uread datatype="boolean">true</unix:uread><unix:oread datatype="boolean">false</unix:oread>
</unix:file_state></states></oval_definitions>"""


def test_files_on_another_guest_filesystem_are_walked_into(tmp_path: Path) -> None:
    """Directory walks reuse the entries met in the parent's listing; a mount point (here
    /var, a second partition mounted from fstab) must still lead into the mounted
    filesystem, as a lookup by path does."""
    disk = _two_filesystem_disk(tmp_path)
    pool = InspectorPool(workers=1, fingerprint_key=secrets.token_bytes(32), handlers=HANDLERS)
    with pool:
        answer = pool.run(disk, KIND, request_payload(OVAL_VAR_LOG.encode()), fmt="raw")
    assert answer["results"] == {"oval:t:def:1": ["true", ""]}

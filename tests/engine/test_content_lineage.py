"""A sweep judges full clones of an approved template by content (#12.4).

Before: a ``qemu-img convert`` copy of the approved template, used by its guest, was an
``unapproved-template`` finding (its root is itself, with its own digest). Now the sweep
compares its content with the signature ``template approve`` recorded and the finding is
gone; an unrelated disk still has it, with the closest template and the similarity.
Real parts: ext4 images made with ``mkfs.ext4 -d`` and ``qemu-img``, the ``vmwarden``
CLI in a subprocess, the libvirt test driver, a real SQLite store.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import qemu_img
from tests.engine.test_scan_fleet import NO_INSPECT
from tests.inspect.lineage_cases import ext4_raw
from vmwarden.engine.scan import Sweep, SweepOptions
from vmwarden.policy import parse_policy

POLICY = """\
version: 1
rules:
  - {{name: unapproved-template, resource: vm, severity: high, filters: [{filter}]}}
"""


def domain(name: str, n: int, path: Path, fmt: str) -> str:
    return f"""<domain type='test'><name>{name}</name>
<uuid>3b0c3c2e-7a4f-4c55-9e7d-1200000000{n:02}</uuid>
<memory>262144</memory><vcpu>1</vcpu><os><type>hvm</type></os><devices>
<disk type='file' device='disk'><driver name='qemu' type='{fmt}'/>
<source file='{path}'/><target dev='vda' bus='virtio'/></disk></devices></domain>"""


@pytest.fixture
def estate(tmp_path: Path) -> dict[str, Path]:
    images = tmp_path / "images"
    images.mkdir()
    raw = ext4_raw(tmp_path, "golden.raw", seed=11)
    golden = images / "golden.qcow2"
    qemu_img("convert", "-q", "-f", "raw", "-O", "qcow2", raw, golden)
    full = images / "web-full.raw"  # virt-clone / qemu-img convert: a full copy, then used
    qemu_img("convert", "-q", "-f", "qcow2", "-O", "raw", golden, full)
    subprocess.run(
        ["qemu-io", "-f", "raw", "-c", "write -P 0x42 3M 1M", str(full)],
        check=True,
        capture_output=True,
    )
    rogue = images / "rogue.qcow2"
    qemu_img("convert", "-q", "-f", "raw", "-O", "qcow2", ext4_raw(tmp_path, "r", seed=12), rogue)
    linked = images / "web-linked.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", "-b", golden, "-F", "qcow2", linked)
    host = tmp_path / "host.xml"
    host.write_text(
        "<node>"
        + domain("web-full", 1, full, "raw")
        + domain("rogue", 2, rogue, "qcow2")
        + domain("web-linked", 3, linked, "qcow2")
        + "</node>"
    )
    return {"images": images, "golden": golden, "host": host, "full": full, "db": tmp_path}


def approve(db: str, image: Path) -> None:
    args = ["template", "approve", str(image), "--name", "golden", "--db", db]
    done = subprocess.run(
        [sys.executable, "-m", "vmwarden.cli.main", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "content lineage: " in done.stdout and "blocks sampled" in done.stdout


def sweep(store, estate, filter_text: str = "not-approved-template"):
    policy = parse_policy(POLICY.format(filter=filter_text))
    options = SweepOptions(images_dirs=[estate["images"]], inspect=NO_INSPECT.inspect)
    return Sweep(store, policy, actor="t", options=options).run([f"test://{estate['host']}"])


def test_full_clone_of_approved_template_is_not_rogue(tmp_path, store, estate) -> None:
    approve(f"sqlite:///{tmp_path / 'vmwarden.db'}", estate["golden"])
    result = sweep(store, estate)
    found = {f.name: f.evidence for f in result.findings}
    assert set(found) == {"rogue"}  # before #12.4: web-full was a finding too
    evidence = found["rogue"]
    assert evidence["closest_template"] == "golden"
    assert evidence["similarity"] < 0.5
    assert evidence["disk"] == "vda" and evidence["digest"].startswith("sha256:")


def test_threshold_is_a_parameter(tmp_path, store, estate) -> None:
    approve(f"sqlite:///{tmp_path / 'vmwarden.db'}", estate["golden"])
    # 1 MiB of its files rewritten: most of the samples are kept, not all
    strict = sweep(store, estate, "{type: not-approved-template, threshold: 1.0}")
    found = {f.name: f.evidence for f in strict.findings}
    assert set(found) == {"rogue", "web-full"}, found
    assert 0.5 <= found["web-full"]["similarity"] < 1.0
    assert found["web-full"]["closest_template"] == "golden"


def lineage_rows(db: Path) -> dict[str, str]:
    """The store's cached comparisons: disk file name → when it was compared."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT path, computed_at FROM digest_cache WHERE path LIKE 'lineage:%'"
        ).fetchall()
    return {path.rsplit("/", 1)[-1]: at for path, at in rows}


def test_comparison_is_cached_until_the_disk_changes(tmp_path, store, estate) -> None:
    db = tmp_path / "vmwarden.db"
    approve(f"sqlite:///{db}", estate["golden"])
    sweep(store, estate)
    first = lineage_rows(db)
    # the linked clone is approved by its root digest: never compared
    assert sorted(first) == ["rogue.qcow2", "web-full.raw"]
    sweep(store, estate)
    assert lineage_rows(db) == first  # cache hits: nothing compared again
    os.utime(estate["full"])  # the guest wrote: compared again
    sweep(store, estate)
    again = lineage_rows(db)
    assert again["rogue.qcow2"] == first["rogue.qcow2"]
    assert again["web-full.raw"] != first["web-full.raw"]


def test_without_a_signature_only_the_digest_counts(store, estate) -> None:
    """A template named only in the policy's ``templates:`` has no content signature."""
    from vmwarden.inspect.digest import digest_file

    policy = POLICY.format(filter="not-approved-template") + (
        f'templates:\n  - {{name: golden, digest: "{digest_file(estate["golden"])}"}}\n'
    )
    options = SweepOptions(images_dirs=[estate["images"]], inspect=NO_INSPECT.inspect)
    result = Sweep(store, parse_policy(policy), actor="t", options=options).run(
        [f"test://{estate['host']}"]
    )
    found = {f.name: f.evidence for f in result.findings}
    assert set(found) == {"rogue", "web-full"}
    assert "similarity" not in found["web-full"]


# --- the power-on gate: the admission hook and watch's judge ----------------------------------

GATE = "version: 1\ngate: {deny: [not-approved-template]}\n"


def gate_domain(name: str, n: int, path: Path, fmt: str) -> str:
    return domain(name, n, path, fmt).replace("<domain type='test'>", "<domain type='kvm'>")


def test_admission_uses_only_what_a_sweep_compared(tmp_path, store, estate) -> None:
    """The hook's answer never reads a disk: a full clone not compared yet is unknown (so
    denied, saying why); once a sweep has compared it, it starts."""
    from vmwarden.engine.admission_decider import Decider
    from vmwarden.inspect.digest import digest_file

    approve(f"sqlite:///{tmp_path / 'vmwarden.db'}", estate["golden"])
    full = estate["full"]
    store.remember_digest(str(full), full.stat(), digest_file(full))  # root digest known
    decide = Decider(store, parse_policy(GATE), image_dirs=[estate["images"]])
    xml = gate_domain("web-full", 1, full, "raw")
    before = decide(xml)
    assert before.decision == "deny"
    assert "not compared yet" in before.reason
    sweep(store, estate)  # compares web-full and caches the result
    after = decide(xml)
    assert (after.decision, after.reason) == ("allow", "")
    rogue = decide(gate_domain("rogue", 2, estate["images"] / "rogue.qcow2", "qcow2"))
    assert rogue.decision == "deny" and "similarity" in rogue.reason


def test_watch_judges_a_starting_full_clone_by_content(tmp_path, store, estate) -> None:
    from vmwarden.connectors.libvirt.domxml import parse_domain
    from vmwarden.engine.watch.judge import Judge
    from vmwarden.model import State

    approve(f"sqlite:///{tmp_path / 'vmwarden.db'}", estate["golden"])
    judge = Judge(parse_policy(GATE), store, hold_unknown=False, hold_unregistered=False)
    judge.image_dirs = [estate["images"]]

    def at_start(name: str, n: int, path: Path, fmt: str):
        xml = gate_domain(name, n, path, fmt)
        uri = f"test://{estate['host']}"  # a test-driver host: its disks are files here
        vm = parse_domain(xml, host="h", uri=uri, state=State.RUNNING, persistent=True)
        return judge.at_start(vm, prior=None, others=[])

    assert at_start("web-full", 1, estate["full"], "raw").reasons == []
    (reason,) = at_start("rogue", 2, estate["images"] / "rogue.qcow2", "qcow2").reasons
    assert reason["closest_template"] == "golden" and reason["similarity"] < 0.5


def test_vm_record_names_the_template_a_full_clone_comes_from(tmp_path, store, estate) -> None:
    """The API's and dashboard's ``cloned_from`` (api.vmfacts): a full clone is named with
    its similarity, from the comparison the sweep cached; the rogue disk is not."""
    from vmwarden.api.vmfacts import template_clones

    approve(f"sqlite:///{tmp_path / 'vmwarden.db'}", estate["golden"])
    sweep(store, estate)
    uid = "3b0c3c2e-7a4f-4c55-9e7d-1200000000{:02}".format
    (full,) = template_clones(store, store.get_vm(uid(1)), None)
    assert (full["disk"], full["template"], full["path"]) == ("vda", "golden", str(estate["full"]))
    assert 0.5 <= full["similarity"] <= 1.0
    assert template_clones(store, store.get_vm(uid(2)), None) == []  # rogue
    (linked,) = template_clones(store, store.get_vm(uid(3)), None)  # by its root's digest
    assert linked["template"] == "golden" and "similarity" not in linked
    os.utime(estate["full"])  # written since the sweep: the cached comparison no longer holds
    assert template_clones(store, store.get_vm(uid(1)), None) == []

"""#10.3 in watch and serve: the power-on gate follows a linked clone's backing file into an
approved template's directory and into ``--images`` directories, as a sweep does (otherwise
watch held, i.e. quarantined, an approved VM at its start); the sweeps ``serve`` starts take
``serve --images``. Real test-driver domain, real qcow2 chain, real store; the judge is the
daemon's own (``Watcher(...).judge``), the scan job the API's own (``ScanJobs``)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import qemu_img
from tests.engine.test_scan_lineage import host_file
from vmwarden.api.jobs import ScanJobs
from vmwarden.connectors.libvirt.connection import LibvirtConnector
from vmwarden.engine.inspection import InspectionOptions
from vmwarden.engine.scan import SweepOptions
from vmwarden.engine.watch import WatchConfig, Watcher
from vmwarden.inspect.digest import digest_file
from vmwarden.model import VM
from vmwarden.policy import Policy, parse_policy
from vmwarden.store import Store


@pytest.fixture
def chain(tmp_path: Path) -> tuple[Path, Path]:
    """(template, clone) in two directories, neither a libvirt pool."""
    (tmp_path / "golden").mkdir()
    raw = tmp_path / "golden" / "base.raw"
    raw.write_bytes(b"golden template " * 4096)
    template = tmp_path / "golden" / "base.qcow2"
    qemu_img("convert", "-q", "-f", "raw", "-O", "qcow2", raw, template)
    raw.unlink()
    (tmp_path / "vms").mkdir()
    clone = tmp_path / "vms" / "web.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", template, clone)
    return template, clone


@pytest.fixture
def policy_file(tmp_path: Path, chain: tuple[Path, Path]) -> Path:
    template, _ = chain
    path = tmp_path / "policy.yaml"
    path.write_text(
        f"""version: 1
templates: [{{name: golden, digest: "{digest_file(template)}"}}]
quarantine: {{network: quarantine}}
rules:
  - {{name: unapproved, resource: vm, severity: high, filters: [not-approved-template],
      actions: [quarantine]}}
"""
    )
    return path


@pytest.fixture
def policy(policy_file: Path) -> Policy:
    return parse_policy(policy_file.read_text(), source=str(policy_file))


@pytest.fixture
def vm(tmp_path: Path, chain: tuple[Path, Path]) -> VM:
    _, clone = chain
    disk = (
        f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
        f"<source file='{clone}'/><target dev='vda' bus='virtio'/></disk>"
    )
    with LibvirtConnector(f"test://{host_file(tmp_path / 'hv.xml', disk)}") as conn:
        return conn.lookup("odd-disk")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(f"sqlite:///{tmp_path / 'w.db'}") as opened_store:
        yield opened_store


def watcher(vm: VM, policy: Policy, store: Store, images: list[Path]) -> Watcher:
    options = SweepOptions(images_dirs=images, inspect=InspectionOptions(enabled=False))
    config = WatchConfig(uris=[vm.uri], hold_unknown=False)
    w = Watcher(config, policy, store, sweep_options=options)
    w.executor.shutdown(wait=False)
    return w


def test_without_an_allowed_directory_the_start_is_held(vm, policy, store):
    judged = watcher(vm, policy, store, []).judge.at_start(vm, prior=None, others=[])
    assert judged.hold
    assert "outside allowed directories" in judged.summary()


def test_images_directory_lets_an_approved_clone_start(vm, chain, policy, store):
    template, _ = chain
    judge = watcher(vm, policy, store, [template.parent]).judge
    judged = judge.at_start(vm, prior=None, others=[])
    assert not judged.hold, judged.summary()


def test_approved_templates_directory_lets_an_approved_clone_start(vm, chain, policy, store):
    template, _ = chain
    store.approve_template("golden", digest_file(template), str(template), {}, "admin")
    judged = watcher(vm, policy, store, []).judge.at_start(vm, prior=None, others=[])
    assert not judged.hold, judged.summary()


@pytest.mark.parametrize("given", [False, True])
def test_serve_images_reach_the_sweeps_the_api_starts(vm, chain, policy_file, store, given):
    template, _ = chain
    jobs = ScanJobs()
    dirs = (template.parent,) if given else ()
    job = jobs.start(store, str(policy_file), [vm.uri], actor="t", enforce=False, images_dirs=dirs)
    done = jobs.wait(job.id, 60)
    assert done is not None and done.status == "done", done and done.error
    outside = [w for w in done.warnings if "outside allowed directories" in w]
    assert bool(outside) is not given
    rules = {f["rule"] for f in store.findings("open")}
    assert ("unapproved" not in rules) is given  # unknown lineage never clears


def _domain_xml(tmp_path: Path) -> str:
    import libvirt

    conn = libvirt.open(f"test://{tmp_path / 'hv.xml'}")
    try:
        return conn.lookupByName("odd-disk").XMLDesc(0)
    finally:
        conn.close()


@pytest.mark.parametrize("given", [False, True])
def test_the_hooks_admission_in_watch_takes_watch_images(vm, chain, store, tmp_path, given):
    """The start hook's decision (``WatchState.decide``) allows an approved clone whose
    template lies in a ``watch --images`` directory; it refused it as "outside allowed
    directories" (found by ``make bench``'s hook rows: the good VM was refused)."""
    template, _ = chain
    gated = parse_policy(
        f"""version: 1
templates: [{{name: golden, digest: "{digest_file(template)}"}}]
quarantine: {{network: quarantine}}
gate: {{deny: [not-approved-template], unreachable: deny}}
rules: []
"""
    )
    state = watcher(vm, gated, store, [template.parent] if given else []).state
    xml = _domain_xml(tmp_path)
    deadline = time.monotonic() + 30
    decision = state.decide(xml)
    while given and decision.decision != "allow" and time.monotonic() < deadline:
        time.sleep(0.1)  # the root's digest is hashed in the background, then cached
        decision = state.decide(xml)
    if given:
        assert decision.decision == "allow", decision.reason
    else:
        assert decision.decision == "deny"
        assert "outside allowed directories" in decision.reason

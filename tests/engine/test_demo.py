"""The embedded demo estate: real images, test-driver hosts, and the verdict it promises."""

from __future__ import annotations

import collections
import time
from pathlib import Path

import libvirt
import pytest
import yaml
from lxml import etree

from vmwarden.engine.demo import ROGUE_BASE, TEMPLATE, build_demo_estate
from vmwarden.inspect.chain import resolve_chain
from vmwarden.inspect.digest import digest_file
from vmwarden.model.vm import VM_XMLNS

DAY = 86400


@pytest.fixture(scope="module")
def timed_build(tmp_path_factory):
    start = time.perf_counter()
    built = build_demo_estate(tmp_path_factory.mktemp("demo"))
    return built, time.perf_counter() - start


@pytest.fixture
def estate(timed_build):
    return timed_build[0]


def domains(estate):
    """(host, domain name, parsed XML, state, persistent) for every demo VM."""
    out = []
    for uri in estate.uris:
        conn = libvirt.openReadOnly(uri)
        host = Path(uri.removeprefix("test://")).stem
        for dom in conn.listAllDomains():
            xml = etree.fromstring(dom.XMLDesc())
            out.append((host, dom.name(), xml, dom.state()[0], bool(dom.isPersistent())))
    return out


def disk_paths(xml):
    return [d.find("source").get("file") for d in xml.findall("devices/disk")]


def test_builds_quickly_with_files_in_place(timed_build):
    estate, _seconds = timed_build  # timing belongs in `make bench`, not in an assertion
    assert len(estate.uris) >= 3
    for uri in estate.uris:
        assert uri.startswith("test:///") and Path(uri.removeprefix("test://")).is_file()
    assert estate.policy_path.is_file()
    assert (estate.images_dir / "templates" / f"{TEMPLATE}.qcow2").is_file()
    assert (estate.images_dir / "templates" / f"{ROGUE_BASE}.qcow2").is_file()
    assert sorted(estate.hosts) == ["hv-dmz", "hv-east", "hv-lab", "hv-west"]


def test_estate_shape(estate):
    doms = domains(estate)
    assert len(doms) >= 50
    states = collections.Counter(state for _, _, _, state, _ in doms)
    assert states[libvirt.VIR_DOMAIN_RUNNING] and states[libvirt.VIR_DOMAIN_PAUSED]
    assert states[libvirt.VIR_DOMAIN_SHUTOFF]
    assert any(not persistent for *_, persistent in doms)
    assert any(not disk_paths(xml) for _, _, xml, _, _ in doms), "a VM with no disks"
    names = [name for _, name, *_ in doms]
    assert len(names) == len(set(names))
    classes = set()
    for _, _, xml, _, _ in doms:
        cls = xml.find(f"metadata/{{{VM_XMLNS}}}vm/{{{VM_XMLNS}}}classification")
        if cls is not None:
            classes.add(cls.text)
    assert classes == {"internal", "pci", "public"}
    for uri in estate.uris:
        nets = {n.name() for n in libvirt.openReadOnly(uri).listAllNetworks()}
        assert {"prod", "pci", "dmz", "quarantine"} <= nets


def test_duplicate_mac_pair(estate):
    owners = collections.defaultdict(list)
    for _, name, xml, _, _ in domains(estate):
        for mac in xml.findall("devices/interface/mac"):
            owners[mac.get("address")].append(name)
    dups = {mac: names for mac, names in owners.items() if len(names) > 1}
    assert len(dups) == 1
    (names,) = dups.values()
    assert all(estate.expected[n] == ["duplicate-mac"] for n in names)


def test_chains_resolve_to_template_or_rogue_base(estate):
    template = str(estate.images_dir / "templates" / f"{TEMPLATE}.qcow2")
    rogue = str(estate.images_dir / "templates" / f"{ROGUE_BASE}.qcow2")
    roots = {}
    for _, name, xml, _, _ in domains(estate):
        for path in disk_paths(xml):
            layers = resolve_chain(path, fmt="qcow2", allowed_dirs=[estate.images_dir])
            assert [layer.error for layer in layers] == [None, None], name
            assert layers[0].path == path
            roots[name] = layers[-1].path
    rogues = {n for n, rules in estate.expected.items() if "unapproved-template" in rules}
    assert len(rogues) >= 2
    assert {n for n, root in roots.items() if root == rogue} == rogues
    assert all(root == template for n, root in roots.items() if n not in rogues)


def test_policy_carries_the_real_template_digest(estate):
    doc = yaml.safe_load(estate.policy_path.read_text())
    template = estate.images_dir / "templates" / f"{TEMPLATE}.qcow2"
    assert doc["templates"] == [{"name": TEMPLATE, "digest": digest_file(template)}]
    assert estate.template_digest == digest_file(template)
    rogue = estate.images_dir / "templates" / f"{ROGUE_BASE}.qcow2"
    assert digest_file(rogue) != estate.template_digest
    assert set(doc["zones"]) == {"internal", "pci", "public"}
    assert doc["quarantine"]["network"] == "quarantine"
    rules = {r["name"]: r for r in doc["rules"]}
    assert set(rules) == {
        "forbidden-software",
        "orphaned-image",
        "unapproved-template",
        "unregistered-vm",
        "outside-zone",
        "mixed-classification-on-host",
        "duplicate-mac",
        "dormant",
        "vulnerable-package",
        "expired-account",
        "ssh-root-login",
        "no-time-sync",
        "shared-password-hash",
        "duplicate-ssh-host-key",
        "world-readable-image",
        "not-inspected",
    }
    assert all(r.get("remediation") for r in rules.values()), "the summary groups by it"
    feed = Path(doc["vulns"])
    assert feed.is_dir() and [p.name for p in feed.glob("*.json")] == ["DSA-5586-1.json"]
    assert rules["unapproved-template"]["actions"] == ["quarantine", "notify"]
    assert rules["dormant"]["filters"] == [{"type": "dormant", "days": 30}]
    assert "@" not in estate.policy_path.read_text().split("rules:")[0].replace("# ", "")


def test_policy_is_valid(estate):
    from vmwarden.policy.loader import load_policy

    policy = load_policy(estate.policy_path)
    assert estate.template_digest in policy.catalog()


def test_dormant_disks_are_back_dated(estate):
    now = time.time()
    for _host, name, xml, state, _ in domains(estate):
        mtimes = [Path(p).stat().st_mtime for p in disk_paths(xml)]
        if name in estate.dormant:
            assert state == libvirt.VIR_DOMAIN_SHUTOFF
            assert mtimes and all(now - m > 90 * DAY for m in mtimes), name
            assert estate.expected[name] == ["dormant"]
        else:
            assert all(now - m < DAY for m in mtimes), name
    assert len(estate.dormant) >= 2


def test_images_are_small(estate):
    total = sum(p.stat().st_size for p in estate.images_dir.rglob("*.qcow2"))
    assert total < 64 * 1024 * 1024


def test_rebuild_is_idempotent(tmp_path):
    first = build_demo_estate(tmp_path)
    snapshot = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    (tmp_path / "demo.db").write_text("kept")
    second = build_demo_estate(tmp_path)
    again = {
        p.relative_to(tmp_path): p.read_bytes()
        for p in tmp_path.rglob("*")
        if p.is_file() and p.name != "demo.db"
    }
    assert again == snapshot
    assert (tmp_path / "demo.db").read_text() == "kept"
    assert second.expected == first.expected
    assert second.template_digest == first.template_digest
    assert second.uris == first.uris


def test_template_digest_is_reproducible_across_workdirs(tmp_path):
    a = build_demo_estate(tmp_path / "a")
    b = build_demo_estate(tmp_path / "b")
    assert a.template_digest == b.template_digest


def test_scan_finds_exactly_the_expected_findings(estate, tmp_path):
    """End to end through the real layers: inventory, lineage, offline inspection of every
    disk (the demo's guests are real ext4 filesystems), storage, policy evaluation."""
    from vmwarden.engine.scan import Sweep
    from vmwarden.policy.loader import load_policy
    from vmwarden.store import Store

    with Store.open(f"sqlite:///{tmp_path / 'demo.db'}") as store:
        result = Sweep(store, load_policy(estate.policy_path), actor="t").run(estate.uris)
    assert result.warnings == []
    assert [f for f in result.findings if f.rule == "uninspectable"] == []
    found = result.findings
    got = collections.defaultdict(list)
    for finding in found:
        got[finding.name].append(finding.rule)
    assert {name: sorted(rules) for name, rules in got.items()} == estate.expected


def test_orphaned_pool_volume_evidence_is_the_files_own(estate, tmp_path):
    """The test driver's pools report allocation 0 and no mtime; on a local host the file
    itself is the authority, so the finding shows its real size and back-dated mtime."""
    import os
    from datetime import UTC, datetime

    from vmwarden.engine.scan import Sweep
    from vmwarden.policy.loader import load_policy
    from vmwarden.store import Store

    with Store.open(f"sqlite:///{tmp_path / 'demo.db'}") as store:
        result = Sweep(store, load_policy(estate.policy_path), actor="t").run(estate.uris)
    (orphan,) = [f for f in result.findings if f.rule == "orphaned-image"]
    st = os.stat(orphan.evidence["path"])
    assert orphan.evidence["size"] == st.st_size > 0
    assert orphan.evidence["mtime"] == datetime.fromtimestamp(st.st_mtime, UTC).isoformat()
    (img,) = [i for i in result.images if i.path == orphan.evidence["path"]]
    assert img.mode == st.st_mode & 0o7777


def test_changed_guests_are_still_linked_clones_of_the_template(estate):
    """The owners' changes (root login, copied keys, an unpatched package) live in the
    clone's own clusters; the chain still ends at the approved template."""
    template = str(estate.images_dir / "templates" / f"{TEMPLATE}.qcow2")
    plain = estate.images_dir / "hv-east" / "east-web-04-vda.qcow2"
    for host, vm in (("hv-east", "east-web-legacy"), ("hv-west", "west-app-unpatched")):
        disk = estate.images_dir / host / f"{vm}-vda.qcow2"
        layers = resolve_chain(str(disk), fmt="qcow2", allowed_dirs=[estate.images_dir])
        assert [layer.path for layer in layers][-1] == template
        assert disk.stat().st_size > plain.stat().st_size + 64 * 1024, vm


def test_images_are_private_but_the_forgotten_backup(estate):
    modes = {p.name: p.stat().st_mode & 0o777 for p in estate.images_dir.rglob("*.qcow2")}
    assert modes.pop("old-cms-backup.qcow2") == 0o644
    assert set(modes.values()) == {0o600}


def test_every_planted_guest_problem_is_expected(estate):
    wanted = {
        "east-web-legacy": {"ssh-root-login", "shared-password-hash", "duplicate-ssh-host-key"},
        "dmz-web-legacy": {"ssh-root-login", "shared-password-hash", "duplicate-ssh-host-key"},
        "west-app-unpatched": {"vulnerable-package", "expired-account", "no-time-sync"},
        "old-cms-backup.qcow2": {"orphaned-image", "world-readable-image"},
    }
    for name, rules in wanted.items():
        assert set(estate.expected[name]) == rules, name

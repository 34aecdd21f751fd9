"""Decider: the policy gate over a domain XML, a real SQLite store and real qcow2 images."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import qemu_img
from vmwarden.connectors.libvirt.domxml import parse_domain
from vmwarden.engine.admission_decider import Decider, Hold
from vmwarden.engine.admission_records import vm_from_record
from vmwarden.inspect.digest import digest_file
from vmwarden.model import State
from vmwarden.policy import parse_policy
from vmwarden.store import Store

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
HOST = "kvm-test"
URI = "qemu:///system"


# The images directory is the host's dir pool, as watch hands its pools to the decider: a
# backing file is followed only into pools, --images and approved templates' dirs (#10.3).
POOLS: list[Path] = []


@pytest.fixture
def images(tmp_path: Path) -> dict[str, Path]:
    d = tmp_path / "images"
    d.mkdir()
    POOLS[:] = [d]
    base, rogue, clone = d / "base.qcow2", d / "rogue.qcow2", d / "clone.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", str(base), "16M")
    qemu_img("create", "-q", "-f", "qcow2", str(rogue), "8M")
    qemu_img("create", "-q", "-f", "qcow2", "-b", str(base), "-F", "qcow2", str(clone))
    return {"base": base, "rogue": rogue, "clone": clone}


@pytest.fixture
def store(db_url: str, images: dict[str, Path]):
    """A store whose digest cache knows the images, as a sweep leaves it: admission judges
    from known digests only (see test_admission_hashing.py for roots it does not know)."""
    with Store.open(db_url) as s:
        for path in images.values():
            if path.suffix == ".qcow2":
                s.remember_digest(str(path), path.stat(), digest_file(path))
        yield s


def domain(
    name: str,
    uuid: str,
    disk: Path | None = None,
    *,
    registered: str | None = "yes",
    mac: str = "52:54:00:00:00:01",
    classification: str | None = None,
) -> str:
    meta = f"<vmwarden:registered>{registered}</vmwarden:registered>" if registered else ""
    if classification:
        meta += f"<vmwarden:classification>{classification}</vmwarden:classification>"
    disk_xml = (
        f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
        f"<source file='{disk}'/><target dev='vda' bus='virtio'/></disk>"
        if disk
        else ""
    )
    return f"""<domain type='kvm'><name>{name}</name><uuid>{uuid}</uuid>
<memory unit='MiB'>64</memory><vcpu>1</vcpu>
<metadata><vmwarden:vm xmlns:vmwarden="http://vmwarden.dev/xmlns/vm/1">{meta}</vmwarden:vm></metadata>
<os><type arch='x86_64' machine='pc'>hvm</type></os>
<devices>{disk_xml}<interface type='network'><mac address='{mac}'/>
<source network='prod'/></interface></devices></domain>"""


def uid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def policy(images: dict[str, Path], gate: str):
    return parse_policy(
        "version: 1\n"
        f"templates: [{{name: base, digest: '{digest_file(images['base'])}'}}]\n"
        f"gate: {gate}\n"
    )


def decider(store: Store | None, pol, **kw) -> Decider:
    kw.setdefault("image_dirs", list(POOLS))
    return Decider(store, pol, host=HOST, uri=URI, clock=lambda: NOW, **kw)


def remember(store: Store, xml: str, state: State, at: datetime) -> None:
    vm = parse_domain(xml, host=HOST, uri=URI, state=state, persistent=True)
    store.record_inventory([vm], now=at, complete_hosts=set())


GATE = "{deny: [not-approved-template], hold: [unregistered, {type: dormant, days: 30}]}"


def test_approved_clone_starts(store: Store, images):
    d = decider(store, policy(images, GATE))
    answer = d(domain("web", uid(1), images["clone"]))
    assert answer.decision == "allow"
    assert not answer.hold
    assert answer.known is False
    assert answer.uuid == uid(1)
    assert d.held == {}


def test_unapproved_image_is_refused_with_the_reason(store: Store, images):
    d = decider(store, policy(images, GATE))
    answer = d(domain("rogue", uid(2), images["rogue"]))
    assert answer.decision == "deny"
    assert answer.reasons[0]["filter"] == "not-approved-template"
    assert answer.reasons[0]["root"] == str(images["rogue"])
    assert "not-approved-template" in answer.reason
    assert str(images["rogue"]) in answer.reason
    assert answer.reason.startswith("vmwarden: VM 'rogue' refused by policy gate")


def test_catalog_from_the_store_counts(store: Store, images):
    pol = parse_policy(f"version: 1\ngate: {GATE}\n")  # no templates in the policy
    d = decider(store, pol)
    assert d(domain("web", uid(1), images["clone"])).decision == "deny"
    store.approve_template("base", digest_file(images["base"]), str(images["base"]), {}, "tester")
    assert d(domain("web", uid(1), images["clone"])).decision == "allow"


def test_missing_disk_is_unknown_and_unknown_never_admits(store: Store, images, tmp_path):
    d = decider(store, policy(images, GATE))
    answer = d(domain("ghost", uid(3), tmp_path / "nowhere.qcow2"))
    assert answer.decision == "deny"
    assert "unknown" in answer.reasons[0]


def test_unregistered_is_held_and_flagged(store: Store, images):
    holds: list[Hold] = []
    d = decider(store, policy(images, GATE), on_hold=holds.append)
    answer = d(domain("stray", uid(4), images["clone"], registered=None))
    assert answer.decision == "allow"
    assert answer.hold
    assert answer.reasons == [{"filter": "unregistered", "registered": None}]
    assert "held in quarantine" in answer.reason
    assert [h.vm.id for h in holds] == [uid(4)]
    assert d.pop_held(uid(4)) is holds[0]
    assert d.pop_held(uid(4)) is None


def test_a_failing_on_hold_callback_does_not_refuse_the_start(store: Store, images):
    def boom(hold: Hold) -> None:
        raise RuntimeError("queue full")

    d = decider(store, policy(images, GATE), on_hold=boom)
    answer = d(domain("stray", uid(4), images["clone"], registered="no"))
    assert (answer.decision, answer.hold) == ("allow", True)


def test_dormant_by_the_stores_history(store: Store, images):
    xml = domain("old", uid(5), images["clone"])
    remember(store, xml, State.RUNNING, NOW - timedelta(days=50))
    remember(store, xml, State.SHUTOFF, NOW - timedelta(days=40))  # witnessed: off since then
    answer = decider(store, policy(images, GATE))(xml)
    assert answer.known is True
    assert (answer.decision, answer.hold) == ("allow", True)
    assert answer.reasons[0]["filter"] == "dormant"
    assert answer.reasons[0]["basis"] == "history"
    assert answer.reasons[0]["days_off"] == 40


def test_recently_stopped_known_vm_starts_freely(store: Store, images):
    xml = domain("fresh", uid(6), images["clone"])
    remember(store, xml, State.RUNNING, NOW - timedelta(days=3))
    remember(store, xml, State.SHUTOFF, NOW - timedelta(days=2))
    answer = decider(store, policy(images, GATE))(xml)
    assert (answer.decision, answer.hold, answer.known) == ("allow", False, True)


def test_a_known_name_does_not_make_a_new_uuid_known(store: Store, images):
    remember(store, domain("web", uid(7), images["clone"]), State.SHUTOFF, NOW)
    answer = decider(store, policy(images, GATE))(domain("web", uid(8), images["clone"]))
    assert answer.known is False


def test_cross_vm_conditions_see_the_stores_vms(store: Store, images):
    """The estate is the starting VM plus every VM the store knows (minus its own record)."""
    twin_mac = "52:54:00:aa:bb:cc"
    other = domain("other", uid(9), images["clone"], mac=twin_mac)
    remember(store, other, State.RUNNING, NOW)
    d = decider(store, policy(images, "{deny: [duplicate-mac]}"))
    answer = d(domain("copycat", uid(10), images["clone"], mac=twin_mac))
    assert answer.decision == "deny"
    assert answer.reasons[0]["filter"] == "duplicate-mac"
    # the VM itself, already stored, is not its own twin
    assert d(other).decision == "allow"


def test_known_vms_can_come_from_the_daemons_memory(images):
    twin_mac = "52:54:00:aa:bb:cc"
    mem = [parse_domain(domain("other", uid(9), mac=twin_mac), host=HOST, uri=URI,
                        state=State.RUNNING, persistent=True)]  # fmt: skip
    d = decider(None, policy(images, "{deny: [duplicate-mac]}"), known_vms=lambda: mem)
    assert d(domain("copycat", uid(10), mac=twin_mac)).decision == "deny"
    assert d(domain("unique", uid(11), mac="52:54:00:00:00:99")).decision == "allow"


def test_unreadable_xml(store: Store, images):
    deny = decider(store, policy(images, GATE))("<domain><name>x</broken>")
    assert deny.decision == "deny"
    assert "could not read the domain XML" in deny.reason
    lenient = decider(store, policy(images, "{hold: [unregistered]}"))("not xml at all")
    assert (lenient.decision, lenient.hold) == ("allow", True)


def test_a_vm_without_disks_is_not_judged_by_lineage(store: Store, images):
    answer = decider(store, policy(images, GATE))(domain("diskless", uid(12)))
    assert answer.decision == "allow"


def test_root_digest_comes_from_the_stores_cache_and_is_memoized(store: Store, images):
    d = decider(store, policy(images, GATE))
    assert d(domain("web", uid(1), images["clone"])).decision == "allow"
    assert len(d._digests) == 1
    assert d.hasher.done == 0  # nothing was hashed: the store knew it


def test_stored_records_round_trip(store: Store, images):
    xml = domain("web", uid(13), images["clone"], classification="pci")
    vm = parse_domain(xml, host=HOST, uri=URI, state=State.RUNNING, persistent=True)
    store.record_inventory([vm], now=NOW, complete_hosts=set())
    back = vm_from_record(store.get_vm(uid(13)))
    assert back.to_dict() == {**vm.to_dict(), "first_seen": back.first_seen.isoformat()}


def test_admission_never_imports_libvirt():
    """By design: libvirtd holds the domain's lock while its hook waits for us."""
    code = (
        "import sys, vmwarden.engine.admission, vmwarden.engine.admission_decider\n"
        "import vmwarden.connectors.libvirt.hook_qemu, vmwarden.connectors.libvirt.hook_install\n"
        "import vmwarden.connectors.capabilities as c; c.start_hook()\n"
        "print(sorted(m for m in sys.modules if m == 'libvirt' or m.startswith('libvirt.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_hook_client_imports_only_the_standard_library():
    """The client's source is what ``hook install`` copies into the hook file, which the
    system interpreter runs as root with ``-I -S``: loaded alone, as there, it must import
    nothing but the standard library."""
    from vmwarden.connectors.libvirt import hook_qemu

    code = (
        "import importlib.util, sys; before = set(sys.modules)\n"
        "spec = importlib.util.spec_from_file_location('hookclient', sys.argv[1])\n"
        "mod = importlib.util.module_from_spec(spec); sys.modules['hookclient'] = mod\n"
        "spec.loader.exec_module(mod)\n"
        "print(sorted(m for m in set(sys.modules) - before"
        " if m.split('.')[0] not in sys.stdlib_module_names))"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code, hook_qemu.__file__],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "['hookclient']"

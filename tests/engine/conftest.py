"""Engine fixtures: real qcow2 images, test-driver fleets whose verdict is known, a real store.

``scan_fleet`` builds, under ``tmp_path``, four test-driver hosts (~340 VMs) over a handful
of real qcow2 files made with ``qemu-img``, and records for every VM the exact rules the
policy of ``scan_policy`` must flag it with. Nothing is mocked: the sweep reads the files
through libvirt's test driver, hashes the real images and writes a real SQLite database.
"""

from __future__ import annotations

import os
import textwrap
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import qemu_img
from vmwarden.engine.fleetgen import (
    FLEET_NETWORKS,
    FleetDisk,
    FleetMeta,
    FleetNic,
    FleetPool,
    FleetVM,
    write_fleet,
)
from vmwarden.inspect.digest import digest_file
from vmwarden.store import Store

DAY = 86400
ZONE_NET = {"internal": "prod", "pci": "pci", "public": "dmz"}
RULES = (
    "unapproved-template",
    "unregistered-vm",
    "outside-zone",
    "mixed-classification-on-host",
    "duplicate-mac",
    "dormant",
)

# --- images -----------------------------------------------------------------------------------


class Images:
    """Real images under ``root`` made with ``qemu-img``, as an administrator would."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "templates").mkdir(parents=True, exist_ok=True)

    def base(self, name: str, payload: bytes) -> Path:
        """A standalone qcow2 whose content (so digest) is set by ``payload``."""
        raw = self.root / "templates" / f".{name}.raw"
        with raw.open("wb") as f:
            f.truncate(4 * 1024 * 1024)
            f.write(payload)
        out = self.root / "templates" / f"{name}.qcow2"
        qemu_img("convert", "-q", "-f", "raw", "-O", "qcow2", raw, out)
        raw.unlink()
        return out

    def clone(self, rel: str, backing: str, *, unsafe: bool = False) -> Path:
        """A linked clone at ``root/rel`` naming ``backing`` verbatim (relative or absolute)."""
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        args: list[str | Path] = ["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", backing]
        if unsafe:  # the backing file need not exist (or be an image): give a size
            args += ["-u", path, "4M"]
        else:
            args += [path]
        qemu_img(*args)
        return path

    @staticmethod
    def backdate(path: Path, days: float) -> None:
        stamp = time.time() - days * DAY
        os.utime(path, (stamp, stamp))


@pytest.fixture
def images(tmp_path: Path) -> Images:
    return Images(tmp_path / "images")


# --- the store --------------------------------------------------------------------------------


class CountingStore(Store):
    """The real store, counting how often the sweep stores a freshly computed digest."""

    remembered: list[str]

    def remember_digest(self, path: str, st: os.stat_result, digest: str) -> None:
        self.remembered.append(path)
        super().remember_digest(path, st, digest)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CountingStore]:
    with CountingStore.open(f"sqlite:///{tmp_path / 'vmwarden.db'}") as opened_store:
        opened_store.remembered = []
        yield opened_store


# --- the policy -------------------------------------------------------------------------------


def policy_text(approved_digest: str, notify_path: Path) -> str:
    return textwrap.dedent(
        f"""\
        version: 1
        templates:
          - name: approved-base
            digest: "{approved_digest}"
        zones:
          internal: {{networks: [prod], classifications: [internal]}}
          pci:      {{networks: [pci], classifications: [pci]}}
          public:   {{networks: [dmz], classifications: [public]}}
        quarantine: {{network: quarantine, link_down: true}}
        notify:
          - {{type: ocsf, path: "{notify_path}"}}
        rules:
          - name: unapproved-template
            resource: vm
            severity: high
            filters: [not-approved-template]
            actions: [quarantine, notify]
          - name: unregistered-vm
            resource: vm
            severity: medium
            filters: [unregistered]
            actions: [notify]
          - name: outside-zone
            resource: vm
            severity: high
            filters: [outside-zone]
            actions: [quarantine]
          - name: mixed-classification-on-host
            resource: vm
            severity: medium
            filters: [mixed-classification-on-host]
            actions: [notify]
          - name: duplicate-mac
            resource: vm
            severity: medium
            filters: [duplicate-mac]
            actions: [notify]
          - name: dormant
            resource: vm
            severity: low
            filters: [{{type: dormant, days: 30}}]
        """
    )


# --- the fleet --------------------------------------------------------------------------------


@dataclass
class Spec:
    """One VM of the fleet and the rules it must be flagged with."""

    name: str
    host: str
    cls: str | None
    state: str = "running"
    transient: bool = False
    registered: bool | None = True
    metadata: bool = True
    disks: tuple[str, ...] = ("approved-0",)  # keys of ScanFleet.disk_files
    cdroms: tuple[str, ...] = ()
    nets: tuple[str, ...] | None = None  # default: the zone network of ``cls``
    macs: tuple[str, ...] | None = None  # default: fresh unique MACs, one per NIC
    rules: frozenset[str] = frozenset()
    unknown: frozenset[str] = frozenset()  # rules whose evidence must be {"unknown": ...}


@dataclass
class ScanFleet:
    root: Path
    hosts: dict[str, Path]
    specs: dict[str, Spec]
    disk_files: dict[str, Path]
    approved: Path
    rogue: Path
    approved_digest: str
    policy_path: Path
    expected_warnings: dict[str, str] = field(default_factory=dict)  # VM name → file named
    _mac_counter: int = 0

    @property
    def uris(self) -> list[str]:
        return [f"test://{p}" for p in self.hosts.values()]

    def expected(self) -> set[tuple[str, str]]:
        return {(rule, s.name) for s in self.specs.values() for rule in s.rules}

    def uuid_of(self, name: str) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"vmwarden-scan-test:{name}"))

    def write_host(self, host: str, **overrides: Any) -> Path:
        """(Re)write one host file; ``overrides`` maps a VM name to Spec field changes."""
        for name, changes in overrides.items():
            for key, value in changes.items():
                setattr(self.specs[name], key, value)
        specs = [s for s in self.specs.values() if s.host == host]
        vms = [self._fleet_vm(s) for s in specs]
        pools = [
            FleetPool("templates", str(self.root / "images" / "templates")),
            FleetPool(f"{host}-clones", str(self.root / "images" / "clones")),
        ]
        path = write_fleet(self.root / "hosts" / f"{host}.xml", vms, FLEET_NETWORKS, pools)
        self.hosts[host] = path
        return path

    def _fleet_vm(self, s: Spec) -> FleetVM:
        nets = s.nets if s.nets is not None else ((ZONE_NET[s.cls],) if s.cls else ("dmz",))
        if s.macs is None:
            s.macs = tuple(self._next_mac() for _ in nets)
        disks = [FleetDisk(str(self.disk_files[d])) for d in s.disks]
        disks += [FleetDisk(str(self.disk_files[c]), "raw", "cdrom") for c in s.cdroms]
        meta = None
        if s.metadata:
            meta = FleetMeta(
                owner="ops", classification=s.cls, template="approved-base", registered=s.registered
            )
        return FleetVM(
            uuid=self.uuid_of(s.name),
            name=s.name,
            state=s.state,
            transient=s.transient,
            disks=disks,
            nics=[FleetNic(m, n) for m, n in zip(s.macs, nets, strict=True)],
            metadata=meta,
        )

    def _next_mac(self) -> str:
        self._mac_counter += 1
        i = self._mac_counter
        return f"52:54:01:{(i >> 16) & 0xFF:02x}:{(i >> 8) & 0xFF:02x}:{i & 0xFF:02x}"


HOST_CLASS = {"hv-a": "internal", "hv-b": "pci", "hv-c": "public"}
FILLER = 90
STATES = ("running", "running", "paused", "shutoff", "running")


def _fleet_specs() -> list[Spec]:
    u, dm, oz, dup, mix, old, rogue = (
        "unregistered-vm",
        "dormant",
        "outside-zone",
        "duplicate-mac",
        "mixed-classification-on-host",
        "dormant",
        "unapproved-template",
    )
    specs: list[Spec] = []
    for host, cls in HOST_CLASS.items():
        for i in range(FILLER):
            state = STATES[i % len(STATES)]
            no_disk = i % 15 == 7  # running or paused VMs without disks: not judged
            specs.append(
                Spec(
                    f"{host}-vm-{i:03d}",
                    host,
                    cls,
                    state=state,
                    transient=state != "shutoff" and i % 11 == 5,
                    disks=() if no_disk else (f"approved-{i % 4}",),
                )
            )
        specs += [
            Spec(f"{host}-rogue-{k}", host, cls, state=STATES[k], disks=(f"rogue-{k % 2}",),
                 rules=frozenset({rogue}))
            for k in range(5)
        ]  # fmt: skip
        specs += [
            Spec(f"{host}-unreg-{k}", host, cls, registered=False, rules=frozenset({u}))
            for k in range(3)
        ]
        specs += [
            Spec(f"{host}-unreg-absent", host, cls, registered=None, rules=frozenset({u})),
            Spec(f"{host}-nometa-0", host, None, metadata=False, rules=frozenset({u})),
            Spec(f"{host}-nometa-1", host, None, metadata=False, state="paused",
                 disks=(), rules=frozenset({u})),
        ]  # fmt: skip
        specs += [
            Spec(f"{host}-dormant-{k}", host, cls, state="shutoff", disks=(f"{host}-dormant-{k}",),
                 rules=frozenset({dm}))
            for k in range(3)
        ]  # fmt: skip
        specs += [
            Spec(f"{host}-recent-off", host, cls, state="shutoff", disks=(f"{host}-recent-off",)),
            Spec(f"{host}-old-running", host, cls, disks=(f"{host}-old-running",)),
            Spec(f"{host}-nodisk-off", host, cls, state="shutoff", disks=(),
                 rules=frozenset({old}), unknown=frozenset({old})),
        ]  # fmt: skip
    shared, triple = "52:54:00:aa:00:01", "52:54:00:aa:00:02"
    specs += [
        # zones: a pci VM reaching prod, and an internal bastion with a dmz leg
        Spec("hv-b-pay-prod-0", "hv-b", "pci", nets=("pci", "prod"), rules=frozenset({oz})),
        Spec("hv-b-pay-prod-1", "hv-b", "pci", nets=("prod",), rules=frozenset({oz})),
        Spec("hv-b-pay-prod-2", "hv-b", "pci", state="shutoff", nets=("pci", "prod"),
             rules=frozenset({oz})),
        Spec("hv-a-bastion", "hv-a", "internal", nets=("prod", "dmz"), rules=frozenset({oz})),
        Spec("hv-a-quarantined", "hv-a", "internal", nets=("quarantine",), rules=frozenset({oz})),
        # MACs cloned across hosts (one written in capitals), and one twice on a single VM
        Spec("hv-a-dup", "hv-a", "internal", macs=(shared,), rules=frozenset({dup})),
        Spec("hv-c-dup", "hv-c", "public", macs=(shared.upper(),), rules=frozenset({dup})),
        Spec("hv-a-dup3", "hv-a", "internal", state="shutoff", macs=(triple,),
             rules=frozenset({dup})),
        Spec("hv-b-dup3", "hv-b", "pci", state="paused", macs=(triple,), rules=frozenset({dup})),
        Spec("hv-c-dup3", "hv-c", "public", macs=(triple,), rules=frozenset({dup})),
        Spec("hv-c-twice", "hv-c", "public", nets=("dmz", "dmz"),
             macs=("52:54:00:aa:00:03", "52:54:00:aa:00:03")),
        # disks: several, a cdrom (no lineage), the template itself, a standalone image
        Spec("hv-a-multi", "hv-a", "internal", disks=("approved-1", "rogue-0"),
             rules=frozenset({rogue})),
        Spec("hv-a-multi-ok", "hv-a", "internal", disks=("approved-1", "approved-2")),
        Spec("hv-a-cdrom", "hv-a", "internal", cdroms=("rogue-base",)),
        Spec("hv-b-on-template", "hv-b", "pci", disks=("approved-base",)),
        Spec("hv-b-standalone", "hv-b", "pci", disks=("standalone",), rules=frozenset({rogue})),
        # everything at once
        Spec("hv-c-rogue-unreg-dormant", "hv-c", "public", state="shutoff", registered=False,
             disks=("hv-c-rogue-old",), rules=frozenset({rogue, u, dm})),
        # lineage that cannot be established: unknown, never clean, never followed out
        Spec("hv-c-lost-backing", "hv-c", "public", disks=("lost-backing",),
             rules=frozenset({rogue}), unknown=frozenset({rogue})),
        Spec("hv-c-shadow", "hv-c", "public", disks=("shadow",),
             rules=frozenset({rogue}), unknown=frozenset({rogue})),
        Spec("hv-c-shadow-link", "hv-c", "public", disks=("shadow-link",),
             rules=frozenset({rogue}), unknown=frozenset({rogue})),
        Spec("hv-c-no-file", "hv-c", "public", disks=("no-file",),
             rules=frozenset({rogue}), unknown=frozenset({rogue})),
        # a host mixing classifications (the unclassified VM is not judged by that rule)
        Spec("mix-int", "hv-mix", "internal", rules=frozenset({mix})),
        Spec("mix-pci", "hv-mix", "pci", state="shutoff", rules=frozenset({mix})),
        Spec("mix-pub", "hv-mix", "public", transient=True, rules=frozenset({mix})),
        Spec("mix-none", "hv-mix", None, metadata=False, rules=frozenset({u})),
    ]  # fmt: skip
    return specs


@pytest.fixture
def scan_fleet(tmp_path: Path, images: Images) -> ScanFleet:
    """~340 VMs on hv-a/hv-b/hv-c (one classification each) and hv-mix; see ``_fleet_specs``."""
    approved = images.base("approved-base", b"approved template " * 1000)
    rogue = images.base("rogue-base", b"downloaded from somewhere " * 1000)
    disk_files: dict[str, Path] = {"approved-base": approved, "rogue-base": rogue}
    for k in range(4):
        disk_files[f"approved-{k}"] = images.clone(
            f"clones/approved-{k}.qcow2", "../templates/approved-base.qcow2"
        )
    for k in range(2):
        disk_files[f"rogue-{k}"] = images.clone(
            f"clones/rogue-{k}.qcow2", "../templates/rogue-base.qcow2"
        )
    disk_files["standalone"] = images.base("standalone", b"built by hand " * 1000)
    for host in HOST_CLASS:
        for k in range(3):
            p = images.clone(f"clones/{host}-dormant-{k}.qcow2", str(approved))
            images.backdate(p, 100 + 50 * k)
            disk_files[f"{host}-dormant-{k}"] = p
        p = images.clone(f"clones/{host}-recent-off.qcow2", str(approved))
        images.backdate(p, 10)
        disk_files[f"{host}-recent-off"] = p
        p = images.clone(f"clones/{host}-old-running.qcow2", str(approved))
        images.backdate(p, 300)
        disk_files[f"{host}-old-running"] = p
    p = images.clone("clones/hv-c-rogue-old.qcow2", "../templates/rogue-base.qcow2")
    images.backdate(p, 120)
    disk_files["hv-c-rogue-old"] = p
    disk_files["lost-backing"] = images.clone(
        "clones/lost-backing.qcow2", "../templates/deleted-base.qcow2", unsafe=True
    )
    disk_files["shadow"] = images.clone("clones/shadow.qcow2", "/etc/shadow", unsafe=True)
    (images.root / "clones" / "shadow-link").symlink_to("/etc/shadow")
    disk_files["shadow-link"] = images.clone("clones/shadow-link.qcow2", "shadow-link", unsafe=True)
    disk_files["no-file"] = images.root / "clones" / "vanished.qcow2"

    policy_path = tmp_path / "policy.yaml"
    digest = digest_file(approved)
    policy_path.write_text(policy_text(digest, tmp_path / "notify.jsonl"))
    fleet = ScanFleet(
        root=tmp_path,
        hosts={},
        specs={s.name: s for s in _fleet_specs()},
        disk_files=disk_files,
        approved=approved,
        rogue=rogue,
        approved_digest=digest,
        policy_path=policy_path,
        expected_warnings={
            "hv-c-lost-backing": str(images.root / "templates" / "deleted-base.qcow2"),
            "hv-c-shadow": "/etc/shadow",
            "hv-c-shadow-link": "shadow-link",
            "hv-c-no-file": str(disk_files["no-file"]),
        },
    )
    for host in (*HOST_CLASS, "hv-mix"):
        fleet.write_host(host)
    return fleet

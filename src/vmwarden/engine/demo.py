"""The embedded demo estate: four test-driver hosts, 52 VMs and small real qcow2 images.

``build_demo_estate(workdir)`` writes, under ``workdir``::

    hosts/hv-east.xml hv-west.xml hv-dmz.xml hv-lab.xml   test-driver hosts (host = file stem)
    images/templates/debian12-base.qcow2                   the approved template (real ext4)
    images/templates/random-download.qcow2                 an unvetted base image (real ext4)
    images/<host>/<vm>-vdX.qcow2                           linked clones (relative backing)
    policy.yaml                                            demo_policy.yaml, digest filled in

and returns which VMs the demo policy must flag with which rules (``DemoEstate.expected``).
The planted problems: clones of the unvetted base, unregistered VMs (one without any
metadata), NICs outside their zone, a host mixing classifications, a MAC on two VMs,
shut-off VMs whose disks were last written 90+ days ago, and inside the guests (read from
the real ext4 disks): two web servers sharing an SSH host key and root password with root
login allowed, an app server with an unpatched openssh (a small OSV feed the demo writes),
an expired account and no time sync, and a forgotten backup image readable by everyone.
Everything else is clean.

Building is deterministic (fixed UUIDs, MACs, filesystem UUIDs and timestamps), so the
template digest is the same on every build, and rebuilding the same ``workdir`` gives the
same estate. Only ``hosts/``, ``images/`` and ``policy.yaml`` are replaced; other files in
``workdir`` (a demo database) are left alone.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from vmwarden.engine.demo_images import (
    NAMESPACE,
    ROGUE_BASE,
    TEMPLATE,
    VARIANTS,
    build_base,
    build_variant,
    clone,
    write_variant,
)
from vmwarden.engine.fleetgen import (
    FLEET_NETWORKS,
    FleetDisk,
    FleetMeta,
    FleetNic,
    FleetPool,
    FleetVM,
    FleetVolume,
    write_fleet,
)
from vmwarden.errors import VmwardenError
from vmwarden.inspect.digest import digest_file

FORGOTTEN_HOST, FORGOTTEN = "hv-dmz", "old-cms-backup.qcow2"
DAY = 86400
_ZONE_NET = {"internal": "prod", "pci": "pci", "public": "dmz"}
_POLICY_TEMPLATE = Path(__file__).with_name("demo_policy.yaml")


@dataclass(slots=True)
class DemoEstate:
    """What was built: libvirt URIs, the policy, the image directory, and the expected verdict.

    ``expected`` maps each VM name the demo policy must flag to the sorted rule names it must
    get; VMs not listed must get no finding.
    """

    uris: list[str]
    policy_path: Path
    images_dir: Path
    expected: dict[str, list[str]]
    hosts: dict[str, Path] = field(default_factory=dict)
    template_digest: str = ""
    dormant: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Spec:
    """One demo VM: who it is and which problem (if any) it carries."""

    name: str
    cls: str | None
    state: str = "running"
    transient: bool = False
    owner: str = "ops"
    registered: bool | None = True
    base: str = TEMPLATE
    disks: int = 1
    extra_nets: tuple[str, ...] = ()
    mac: str | None = None
    dormant_days: int = 0
    metadata: bool = True
    variant: str | None = None  # what the owner changed inside the clone (demo_images.VARIANTS)
    rules: tuple[str, ...] = ()


def _host_specs() -> dict[str, list[_Spec]]:
    """The estate, host by host. ``rules`` is what the demo policy must find on the VM."""
    owners = ("alice", "bob", "carol", "dave", "erin")
    states = ("running", "running", "paused", "running", "shutoff", "running")

    def filler(host: str, cls: str, n: int) -> list[_Spec]:
        return [
            _Spec(
                name=f"{host}-{role}-{i:02d}",
                cls=cls,
                state=states[i % len(states)],
                transient=states[i % len(states)] != "shutoff" and i % 5 == 3,
                owner=owners[i % len(owners)],
            )
            for i, role in ((i, ("web", "app", "db", "api")[i % 4]) for i in range(1, n + 1))
        ]

    shared_mac = "52:54:00:de:ad:01"
    # unvetted base: telnetd, root login by password, no time sync, one root hash on every
    # copy, and no advisories in the demo's feed for its OS: unknown, which never clears a VM
    rogue = (
        "unapproved-template",
        "forbidden-software",
        "ssh-root-login",
        "no-time-sync",
        "shared-password-hash",
        "vulnerable-package",
    )
    legacy = ("ssh-root-login", "shared-password-hash", "duplicate-ssh-host-key")
    east = [
        *filler("east", "internal", 10),
        _Spec("east-rogue-miner", "internal", owner="mallory", base=ROGUE_BASE, rules=rogue),
        _Spec("east-web-legacy", "internal", variant="web-legacy", rules=legacy),
        _Spec("east-dev-scratch", "internal", owner="bob", registered=False,
              rules=("unregistered-vm",)),
        _Spec("east-bastion", "internal", extra_nets=("dmz",), rules=("outside-zone",)),
        _Spec("east-web-dup", "internal", mac=shared_mac, rules=("duplicate-mac",)),
        _Spec("east-legacy-01", "internal", state="shutoff", dormant_days=120,
              rules=("dormant",)),
        _Spec("east-build-04", "internal", state="shutoff"),
        # No disk: nothing to inspect, so no guest rule judges it; not-inspected says why.
        _Spec("east-pxe-boot", "internal", disks=0, rules=("not-inspected",)),
        _Spec("east-batch-tmp", "internal", state="paused", transient=True),
    ]  # fmt: skip
    west = [
        *filler("west", "pci", 11),
        _Spec("west-rogue-tool", "pci", owner="mallory", base=ROGUE_BASE, rules=rogue),
        _Spec("west-app-unpatched", "pci", state="shutoff", variant="app-unpatched",
              rules=("vulnerable-package", "expired-account", "no-time-sync")),
        _Spec("west-pay-02", "pci", extra_nets=("prod",), rules=("outside-zone",)),
        _Spec("west-archive-01", "pci", state="shutoff", dormant_days=95, rules=("dormant",)),
        _Spec("west-db-multi", "pci", disks=2),
        _Spec("west-ledger-09", "pci", state="shutoff"),
    ]  # fmt: skip
    dmz = [
        *filler("dmz", "public", 10),
        _Spec("dmz-rogue-web", "public", state="paused", registered=False, base=ROGUE_BASE,
              rules=(*rogue, "unregistered-vm")),
        _Spec("dmz-web-legacy", "public", variant="web-legacy", rules=legacy),
        _Spec("dmz-unknown-01", None, metadata=False, rules=("unregistered-vm",)),
        _Spec("dmz-web-dup", "public", mac=shared_mac, rules=("duplicate-mac",)),
        _Spec("dmz-old-cms", "public", state="shutoff", dormant_days=200, rules=("dormant",)),
    ]  # fmt: skip
    mixed = ("mixed-classification-on-host",)
    lab = [
        _Spec("lab-int-01", "internal", rules=mixed),
        _Spec("lab-int-02", "internal", state="shutoff", rules=mixed),
        _Spec("lab-pub-01", "public", rules=mixed),
        _Spec("lab-pub-02", "public", transient=True, rules=mixed),
    ]
    return {"hv-east": east, "hv-west": west, "hv-dmz": dmz, "hv-lab": lab}


def build_demo_estate(workdir: str | os.PathLike[str]) -> DemoEstate:
    """Build (or rebuild) the demo estate in ``workdir``; takes about a second.

    Raises:
        VmwardenError: ``qemu-img`` is not installed or failed.
    """
    if shutil.which("qemu-img") is None:
        raise VmwardenError(
            "qemu-img not found", hint="install qemu-utils (apt install qemu-utils)"
        )
    wd = Path(workdir).absolute()
    images = wd / "images"
    hosts_dir = wd / "hosts"
    for old in (images, hosts_dir):
        if old.exists():
            shutil.rmtree(old)
    templates = images / "templates"
    templates.mkdir(parents=True)
    hosts_dir.mkdir()
    now = time.time()

    template_raw, variants = _build_bases(templates, wd)
    template_digest = digest_file(templates / f"{TEMPLATE}.qcow2")

    specs = _host_specs()
    jobs: list[tuple[Path, str]] = []
    inside: list[tuple[Path, str]] = []  # clones whose guest the owner changed
    estate = DemoEstate(uris=[], policy_path=wd / "policy.yaml", images_dir=images, expected={})
    estate.template_digest = template_digest
    for h_index, (host, vms) in enumerate(specs.items()):
        host_images = images / host
        host_images.mkdir()
        fleet: list[FleetVM] = []
        volumes: list[FleetVolume] = []
        for v_index, spec in enumerate(vms):
            disks = []
            for d in range(spec.disks):
                path = host_images / f"{spec.name}-vd{chr(ord('a') + d)}.qcow2"
                jobs.append((path, spec.base))
                if spec.variant and d == 0:
                    inside.append((path, spec.variant))
                disks.append(FleetDisk(str(path)))
                volumes.append(
                    FleetVolume(
                        name=path.name,
                        path=str(path),
                        backing=str(templates / f"{spec.base}.qcow2"),
                        backing_format="qcow2",
                    )
                )
            fleet.append(_fleet_vm(spec, h_index, v_index, disks))
            if spec.rules:
                estate.expected[spec.name] = sorted(spec.rules)
            if spec.dormant_days:
                estate.dormant.append(spec.name)
        if host == FORGOTTEN_HOST:  # a disk nobody uses any more, left in the pool for years
            path = host_images / FORGOTTEN
            jobs.append((path, TEMPLATE))
            volumes.append(FleetVolume(name=FORGOTTEN, path=str(path)))
            estate.expected[FORGOTTEN] = ["orphaned-image", "world-readable-image"]
        pools = [
            FleetPool("templates", str(templates), _template_volumes(templates)),
            FleetPool(f"{host}-vms", str(host_images), volumes),
        ]
        path = write_fleet(hosts_dir / f"{host}.xml", fleet, FLEET_NETWORKS, pools)
        estate.hosts[host] = path
        estate.uris.append(f"test://{path}")

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda job: clone(job[0], job[1]), jobs))
        list(pool.map(lambda job: write_variant(job[0], template_raw, variants[job[1]]), inside))
    for raw in (template_raw, *variants.values()):
        raw.unlink()
    _age_and_modes(images, specs, now)
    _write_policy(estate.policy_path, template_digest, wd / "notifications.ocsf.jsonl", wd)
    return estate


def _build_bases(templates: Path, wd: Path) -> tuple[Path, dict[str, Path]]:
    """Both base images, and the raw template and variants the clones are diffed from."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        bases = pool.map(
            lambda b: build_base(templates, b, wd, keep_raw=True), (TEMPLATE, ROGUE_BASE)
        )
        template_raw, rogue_raw = list(bases)
        built = pool.map(lambda v: build_variant(wd, v, wd), VARIANTS)
        variants = dict(zip(VARIANTS, built, strict=True))
    rogue_raw.unlink()
    return template_raw, variants


def _age_and_modes(images: Path, specs: dict[str, list[_Spec]], now: float) -> None:
    """Disk times of the dormant VMs and the forgotten backup; every image private (0600,
    as libvirt makes them) except the backup someone copied out world-readable."""
    for image in images.rglob("*.qcow2"):
        image.chmod(0o600)
    forgotten = images / FORGOTTEN_HOST / FORGOTTEN
    forgotten.chmod(0o644)
    stamp = now - 400 * DAY
    os.utime(forgotten, (stamp, stamp))
    for host, vms in specs.items():
        for spec in vms:
            if spec.dormant_days:
                stamp = now - spec.dormant_days * DAY
                for disk in (images / host).glob(f"{spec.name}-vd*.qcow2"):
                    os.utime(disk, (stamp, stamp))


def _fleet_vm(spec: _Spec, h_index: int, v_index: int, disks: list[FleetDisk]) -> FleetVM:
    mac = spec.mac or f"52:54:00:{h_index + 1:02x}:{v_index:02x}:00"
    net = _ZONE_NET[spec.cls] if spec.cls else "dmz"
    nics = [FleetNic(mac, net, vlan=100 + h_index)]
    nics += [
        FleetNic(f"52:54:00:{h_index + 1:02x}:{v_index:02x}:{i + 1:02x}", n)
        for i, n in enumerate(spec.extra_nets)
    ]
    meta = None
    if spec.metadata:
        meta = FleetMeta(
            owner=spec.owner,
            classification=spec.cls,
            template=TEMPLATE,  # what the owner claims; the rogue clones lie
            registered=spec.registered,
        )
    return FleetVM(
        uuid=str(uuid.uuid5(NAMESPACE, spec.name)),
        name=spec.name,
        state=spec.state,
        transient=spec.transient,
        vcpus=1 + v_index % 2,
        memory=262144,
        disks=disks,
        nics=nics,
        metadata=meta,
    )


def _template_volumes(templates: Path) -> list[FleetVolume]:
    return [
        FleetVolume(name=f"{b}.qcow2", path=str(templates / f"{b}.qcow2"))
        for b in (TEMPLATE, ROGUE_BASE)
    ]


def _write_policy(target: Path, digest: str, notify_path: Path, wd: Path) -> None:
    feed = wd / "osv"
    if feed.exists():
        shutil.rmtree(feed)
    feed.mkdir()
    for advisory in _OSV_FEED:
        (feed / f"{advisory['id']}.json").write_text(json.dumps(advisory, indent=2))
    text = _POLICY_TEMPLATE.read_text(encoding="utf-8")
    text = text.replace("@DEBIAN12_BASE_DIGEST@", digest).replace("@NOTIFY_PATH@", str(notify_path))
    target.write_text(text.replace("@VULNS_PATH@", str(feed)), encoding="utf-8")


# The demo's OSV feed: Debian's advisory for the SSH "Terrapin" attack, in osv.dev's form,
# trimmed to what matching reads. The unpatched app server has the version before the fix.
_OSV_FEED: list[dict[str, object]] = [
    {
        "schema_version": "1.6.0",
        "id": "DSA-5586-1",
        "summary": "openssh - security update",
        "details": "Several vulnerabilities were discovered in OpenSSH, among them the "
        "Terrapin prefix truncation attack (CVE-2023-48795). For bookworm, fixed in "
        "1:9.2p1-2+deb12u2.",
        "related": ["CVE-2023-28531", "CVE-2023-48795", "CVE-2023-51385"],
        "published": "2023-12-19T00:00:00Z",
        "modified": "2023-12-19T00:00:00Z",
        "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:N/I:H/A:N"}],
        "affected": [
            {
                "package": {"ecosystem": "Debian:12", "name": "openssh"},
                "ranges": [
                    {
                        "type": "ECOSYSTEM",
                        "events": [{"introduced": "0"}, {"fixed": "1:9.2p1-2+deb12u2"}],
                    }
                ],
            }
        ],
        "references": [
            {"type": "ADVISORY", "url": "https://www.debian.org/security/2023/dsa-5586"}
        ],
    }
]

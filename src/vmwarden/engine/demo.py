"""The embedded demo estate: four test-driver hosts, 52 VMs and small real qcow2 images.

``build_demo_estate(workdir)`` writes, under ``workdir``::

    hosts/hv-east.xml hv-west.xml hv-dmz.xml hv-lab.xml   test-driver hosts (host = file stem)
    images/templates/debian12-base.qcow2                   the approved template (real ext4)
    images/templates/random-download.qcow2                 an unvetted base image (real ext4)
    images/<host>/<vm>-vdX.qcow2                           linked clones (relative backing)
    policy.yaml                                            demo_policy.yaml, digest filled in

and returns which VMs the demo policy must flag with which rules (``DemoEstate.expected``).
The planted problems: clones of the unvetted base, unregistered VMs (one without any
metadata), NICs outside their zone, a host mixing classifications, a MAC on two VMs, and
shut-off VMs whose disks were last written 90+ days ago. Everything else is clean.

Building is deterministic (fixed UUIDs, MACs, filesystem UUIDs and timestamps), so the
template digest is the same on every build, and rebuilding the same ``workdir`` gives the
same estate. Only ``hosts/``, ``images/`` and ``policy.yaml`` are replaced; other files in
``workdir`` (a demo database) are left alone.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

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

TEMPLATE = "debian12-base"
ROGUE_BASE = "random-download"
FORGOTTEN_HOST, FORGOTTEN = "hv-dmz", "old-cms-backup.qcow2"
VIRTUAL_SIZE = 64 * 1024 * 1024
DAY = 86400
_NS = uuid.UUID("6f1c9a52-8d7e-4a53-9d0b-3c5e2f6a7b10")
_FIXED_TIME = 1_700_000_000  # file timestamps inside the template filesystems
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
    east = [
        *filler("east", "internal", 10),
        _Spec("east-rogue-miner", "internal", owner="mallory", base=ROGUE_BASE,
              rules=("unapproved-template", "forbidden-software")),
        _Spec("east-dev-scratch", "internal", owner="bob", registered=False,
              rules=("unregistered-vm",)),
        _Spec("east-bastion", "internal", extra_nets=("dmz",), rules=("outside-zone",)),
        _Spec("east-web-dup", "internal", mac=shared_mac, rules=("duplicate-mac",)),
        _Spec("east-legacy-01", "internal", state="shutoff", dormant_days=120,
              rules=("dormant",)),
        _Spec("east-build-04", "internal", state="shutoff"),
        # No disk to read: its software is unknown, and unknown never clears a VM.
        _Spec("east-pxe-boot", "internal", disks=0, rules=("forbidden-software",)),
        _Spec("east-batch-tmp", "internal", state="paused", transient=True),
    ]  # fmt: skip
    west = [
        *filler("west", "pci", 11),
        _Spec("west-rogue-tool", "pci", owner="mallory", base=ROGUE_BASE,
              rules=("unapproved-template", "forbidden-software")),
        _Spec("west-pay-02", "pci", extra_nets=("prod",), rules=("outside-zone",)),
        _Spec("west-archive-01", "pci", state="shutoff", dormant_days=95, rules=("dormant",)),
        _Spec("west-db-multi", "pci", disks=2),
        _Spec("west-ledger-09", "pci", state="shutoff"),
    ]  # fmt: skip
    dmz = [
        *filler("dmz", "public", 10),
        _Spec("dmz-rogue-web", "public", state="paused", registered=False, base=ROGUE_BASE,
              rules=("unapproved-template", "unregistered-vm", "forbidden-software")),
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

    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda b: _build_base(templates, b, wd), (TEMPLATE, ROGUE_BASE)))
    template_digest = digest_file(templates / f"{TEMPLATE}.qcow2")

    specs = _host_specs()
    jobs: list[tuple[Path, str]] = []
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
            estate.expected[FORGOTTEN] = ["orphaned-image"]
        pools = [
            FleetPool("templates", str(templates), _template_volumes(templates)),
            FleetPool(f"{host}-vms", str(host_images), volumes),
        ]
        path = write_fleet(hosts_dir / f"{host}.xml", fleet, FLEET_NETWORKS, pools)
        estate.hosts[host] = path
        estate.uris.append(f"test://{path}")

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda job: _clone(job[0], job[1]), jobs))
    stamp = now - 400 * DAY
    os.utime(images / FORGOTTEN_HOST / FORGOTTEN, (stamp, stamp))
    for host, vms in specs.items():
        for spec in vms:
            if spec.dormant_days:
                stamp = now - spec.dormant_days * DAY
                for disk in (images / host).glob(f"{spec.name}-vd*.qcow2"):
                    os.utime(disk, (stamp, stamp))

    _write_policy(estate.policy_path, template_digest, wd / "notifications.ocsf.jsonl")
    return estate


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
        uuid=str(uuid.uuid5(_NS, spec.name)),
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


def _write_policy(target: Path, digest: str, notify_path: Path) -> None:
    text = _POLICY_TEMPLATE.read_text(encoding="utf-8")
    text = text.replace("@DEBIAN12_BASE_DIGEST@", digest).replace("@NOTIFY_PATH@", str(notify_path))
    target.write_text(text, encoding="utf-8")


# --- images ---------------------------------------------------------------------------------


def _run(*args: str, env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(args, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise VmwardenError(
            f"{args[0]} failed: {proc.stderr.strip() or proc.returncode}",
            hint="check that qemu-utils and e2fsprogs are installed and the disk is not full",
        )


def _clone(path: Path, base: str) -> None:
    """A linked clone, named relative to its own directory (as ``virt-clone`` users do)."""
    backing = f"../templates/{base}.qcow2"
    _run("qemu-img", "create", "-q", "-f", "qcow2", "-b", backing, "-F", "qcow2", str(path))


def _build_base(templates: Path, base: str, wd: Path) -> None:
    """A 64 MiB disk with an MBR and one ext4 partition holding a tiny distro tree."""
    raw = templates / f".{base}.raw"
    tree = wd / f".tree-{base}"
    if tree.exists():
        shutil.rmtree(tree)
    _write_tree(tree, _ROOTFS[base])
    with raw.open("wb") as f:
        f.truncate(VIRTUAL_SIZE)
        f.write(_mbr(VIRTUAL_SIZE))
    fs_id = str(uuid.uuid5(_NS, base))
    mkfs = shutil.which("mkfs.ext4") or shutil.which("mkfs.ext4", path="/usr/sbin:/sbin")
    if mkfs:
        env = {**os.environ, "E2FSPROGS_FAKE_TIME": str(_FIXED_TIME)}
        _run(
            mkfs, "-q", "-F", "-L", base[:16], "-U", fs_id,
            "-E", f"offset={1 << 20},hash_seed={fs_id},root_owner=0:0",
            "-d", str(tree), str(raw), f"{(VIRTUAL_SIZE >> 10) - 1024}k",
            env=env,
        )  # fmt: skip
        _pin_inode_times(raw, tree, env)
    else:  # no e2fsprogs: still two distinct, deterministic images
        with raw.open("r+b") as f:
            f.seek(1 << 20)
            f.write(f"vmwarden demo base image {base}\n".encode())
    _run(
        "qemu-img",
        "convert",
        "-q",
        "-f",
        "raw",
        "-O",
        "qcow2",
        str(raw),
        str(templates / f"{base}.qcow2"),
    )
    raw.unlink()
    shutil.rmtree(tree)


def _pin_inode_times(raw: Path, tree: Path, env: dict[str, str]) -> None:
    """Set ctime/crtime of every inode: ``mkfs -d`` copies them from the build tree (where
    they are "now" and cannot be set), which would change the template digest per build."""
    debugfs = shutil.which("debugfs") or shutil.which("debugfs", path="/usr/sbin:/sbin")
    if debugfs is None:
        return
    stamp = datetime.fromtimestamp(_FIXED_TIME, UTC).strftime("%Y%m%d%H%M%S")
    inodes = ["/", "/lost+found"] + [f"/{p.relative_to(tree)}" for p in sorted(tree.rglob("*"))]
    script = raw.with_suffix(".debugfs")
    script.write_text(
        "".join(f'sif "{i}" {field} {stamp}\n' for i in inodes for field in ("ctime", "crtime"))
    )
    _run(debugfs, "-w", "-f", str(script), f"{raw}?offset={1 << 20}", env=env)
    script.unlink()


def _mbr(size: int) -> bytes:
    """A DOS partition table with one Linux partition from 1 MiB to the end."""
    start = 2048
    entry = struct.pack(
        "<B3sB3sII", 0, b"\xfe\xff\xff", 0x83, b"\xfe\xff\xff", start, size // 512 - start
    )
    return b"\x00" * 440 + b"VMWD" + b"\x00\x00" + entry + b"\x00" * 48 + b"\x55\xaa"


def _write_tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
        if rel == "etc/shadow":
            p.chmod(0o640)
    # mkfs -d copies timestamps; fixed ones make the image (and its digest) reproducible.
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in [*filenames, *dirnames, ""]:
            os.utime(os.path.join(dirpath, name) if name else dirpath, (_FIXED_TIME, _FIXED_TIME))


def _dpkg_status(packages: dict[str, str]) -> str:
    return "".join(
        f"Package: {name}\nStatus: install ok installed\nPriority: optional\n"
        f"Architecture: amd64\nVersion: {version}\nDescription: {name}\n\n"
        for name, version in packages.items()
    )


_PASSWD = (
    "root:x:0:0:root:/root:/bin/bash\n"
    "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
    "sshd:x:100:65534::/run/sshd:/usr/sbin/nologin\n"
)
_ROOTFS: dict[str, dict[str, str]] = {
    TEMPLATE: {
        "etc/os-release": (
            'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\n'
            'VERSION_ID="12"\nVERSION="12 (bookworm)"\nVERSION_CODENAME=bookworm\nID=debian\n'
        ),
        "etc/debian_version": "12.5\n",
        "etc/hostname": "debian12-base\n",
        "etc/machine-id": "",  # empty: a clean template, each clone gets its own
        "etc/passwd": _PASSWD,
        "etc/shadow": (
            "root:*:19700:0:99999:7:::\ndaemon:*:19700:0:99999:7:::\nsshd:!:19700::::::\n"
        ),
        "etc/ssh/sshd_config": "PermitRootLogin no\nPasswordAuthentication no\n",
        "etc/chrony/chrony.conf": "pool 2.debian.pool.ntp.org iburst\n",
        "var/lib/dpkg/status": _dpkg_status(
            {
                "base-files": "12.4+deb12u5",
                "openssh-server": "1:9.2p1-2+deb12u2",
                "chrony": "4.3-2+deb12u1",
                "openssl": "3.0.11-1~deb12u2",
                "sudo": "1.9.13p3-1+deb12u1",
            }
        ),
    },
    ROGUE_BASE: {
        "etc/os-release": (
            'PRETTY_NAME="Ubuntu 20.04.1 LTS"\nNAME="Ubuntu"\nVERSION_ID="20.04"\n'
            'VERSION="20.04.1 LTS (Focal Fossa)"\nID=ubuntu\nID_LIKE=debian\n'
        ),
        "etc/hostname": "ubuntu\n",
        "etc/machine-id": "4f2ab0c9d1e84b7a9c3e5d6f7a8b9c0d\n",
        "etc/passwd": _PASSWD + "ubuntu:x:1000:1000:Ubuntu:/home/ubuntu:/bin/bash\n",
        "etc/shadow": (
            "root:$6$demo$8Jc1bIvpM0cZkPp1fUQ0aG2m1H9h8QnW7rK3dE5sT6uV7wX8yZ9aB0cD1eF2gH3iJ4"
            "kL5mN6oP7qR8sT9uV0w:18500:0:99999:7:::\ndaemon:*:18500:0:99999:7:::\n"
            "sshd:*:18500:0:99999:7:::\nubuntu:$6$demo$x:18500:0:99999:7:::\n"
        ),
        "etc/ssh/sshd_config": "PermitRootLogin yes\nPasswordAuthentication yes\n",
        "var/lib/dpkg/status": _dpkg_status(
            {
                "base-files": "11ubuntu5.1",
                "openssh-server": "1:8.2p1-4",
                "openssl": "1.1.1f-1ubuntu2",
                "telnetd": "0.17-41.2build1",
                "netcat-traditional": "1.10-41.1",
            }
        ),
    },
}

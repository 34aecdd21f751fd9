"""libvirt backends of the conformance suite: the machine's real ``qemu:///system`` and a
second libvirtd over TCP that is another host in all that matters (``tests.hypervisors``).

VMs are tiny and idle (no OS: a 1 MiB qcow2, ``<bios rebootTimeout='-1'/>``, NIC ROMs off),
made with libvirt's own API, named ``vmw-r-conf-*``, and only these are removed afterwards.
The networks ``prod`` and ``quarantine`` are the integration fixtures' shared ones locally
(idempotent, never destroyed); the second host gets its own two (bridges ``vmw-r-b*``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import uuid
from pathlib import Path

import libvirt

from tests.connectors.conformance.conftest import Estate, VmSpec
from tests.hypervisors import SCRIPT, SecondHost, need_root_libvirtd
from tests.integration.conftest import NETWORKS
from vmwarden.model.isolation import QuarantineSpec
from vmwarden.model.vm import State

IMAGES = Path("/var/cache/vmwarden-test")
LINEAGE = sorted(IMAGES.glob("lineage-*"))
TEMPLATE = IMAGES / "debian-minbase.qcow2"
UNRELATED = IMAGES / "debian-minbase-other-build.qcow2"
BRIDGES_B = {"prod": "vmw-r-bprod", "quarantine": "vmw-r-bquar"}  # host B's networks
ROLES = {"plain": 2, "isolate": 2, "crash": 2, "events": 1}


def full_clone() -> Path:
    """The lineage fixture's full clone of TEMPLATE (qcow2 -> raw -> qcow2, then used)."""
    return LINEAGE[-1] / "full-used.qcow2" if LINEAGE else IMAGES / "missing-full-used.qcow2"


def need_images() -> None:
    missing = [p for p in (TEMPLATE, UNRELATED, full_clone()) if not p.is_file()]
    if missing:
        raise AssertionError(
            f"test images missing: {missing} (built by make test-images / the lead's build)"
        )


def virt_type(conn: libvirt.virConnect) -> str:
    try:
        conn.getDomainCapabilities(None, "x86_64", None, "kvm")
    except libvirt.libvirtError:
        return "qemu"
    return "kvm" if os.access("/dev/kvm", os.R_OK | os.W_OK) else "qemu"


def _mac(name: str, i: int) -> str:
    h = uuid.uuid5(uuid.NAMESPACE_URL, f"{name}/{i}").hex
    return f"52:54:00:{h[0:2]}:{h[2:4]}:{h[4:6]}"


def domain_xml(name: str, vm_id: str, virt: str, disk: str, nics: list[tuple[str, str]]) -> str:
    nic_xml = "".join(
        f"<interface type='network'><mac address='{mac}'/><source network='{net}'/>"
        "<model type='virtio'/><rom enabled='no'/></interface>"
        for mac, net in nics
    )
    return f"""<domain type='{virt}'><name>{name}</name><uuid>{vm_id}</uuid>
<memory unit='MiB'>64</memory><vcpu>1</vcpu>
<os><type arch='x86_64' machine='pc'>hvm</type><bios rebootTimeout='-1'/></os>
<devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
<source file='{disk}'/><target dev='vda' bus='virtio'/></disk>{nic_xml}</devices></domain>"""


class _Libvirt:
    """What both libvirt backends share: VMs by role on one daemon."""

    name = "libvirt"
    uri = "qemu:///system"
    prefix = "vmw-r-conf"

    def __init__(self) -> None:
        self.names: list[str] = []

    def conn(self) -> libvirt.virConnect:
        return libvirt.open(self.uri)

    def disk_dir(self, work: Path) -> tuple[Path, str]:
        """Where VM disks are made here, and that directory as the daemon names it."""
        raise NotImplementedError

    def make_vms(self, work: Path) -> dict[str, VmSpec]:
        here, there = self.disk_dir(work)
        conn = self.conn()
        try:
            virt = virt_type(conn)
            vms = {}
            for role, n_nics in ROLES.items():
                name = f"{self.prefix}-{role}"
                vm_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.uri}/{name}"))
                disk = f"{there}/{name}.qcow2"
                subprocess.run(
                    ["qemu-img", "create", "-q", "-f", "qcow2", str(here / f"{name}.qcow2"), "1M"],
                    check=True,
                )
                nets = ["prod", "prod"][:n_nics]
                nics = [(_mac(name, i), net) for i, net in enumerate(nets)]
                self._remove(conn, name)
                conn.defineXML(domain_xml(name, vm_id, virt, disk, nics))
                self.names.append(name)
                vms[role] = VmSpec(vm_id, name, State.SHUTOFF, frozenset(nics), (disk,))
            return vms
        finally:
            conn.close()

    @staticmethod
    def _remove(conn: libvirt.virConnect, name: str) -> None:
        try:
            dom = conn.lookupByName(name)
        except libvirt.libvirtError:
            return
        if dom.isActive():
            dom.destroy()
        dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)

    def networks(self, bridges: dict[str, str]) -> None:
        conn = self.conn()
        try:
            for name in ("prod", "quarantine"):
                try:
                    net = conn.networkLookupByName(name)
                except libvirt.libvirtError:
                    net = conn.networkDefineXML(
                        f"<network><name>{name}</name><bridge name='{bridges[name]}'/></network>"
                    )
                if not net.isActive():
                    net.create()
        finally:
            conn.close()

    def start(self, vm_id: str) -> None:
        conn = self.conn()
        try:
            conn.lookupByUUIDString(vm_id).create()
        finally:
            conn.close()

    def stop(self, vm_id: str) -> None:
        conn = self.conn()
        try:
            dom = conn.lookupByUUIDString(vm_id)
            if dom.isActive():
                dom.destroy()
        finally:
            conn.close()

    def teardown(self) -> None:
        conn = self.conn()
        try:
            for name in self.names:
                self._remove(conn, name)
        finally:
            conn.close()


class LocalLibvirt(_Libvirt):
    """The machine's own libvirtd: its disks are this machine's files."""

    def __init__(self) -> None:
        super().__init__()
        self._dir: Path | None = None

    def disk_dir(self, work: Path) -> tuple[Path, str]:
        # qemu (libvirt-qemu) can traverse /var/lib/libvirt/images; pytest's tmp it cannot
        d = Path("/var/lib/libvirt/images") / f"{self.prefix}-{uuid.uuid4().hex[:8]}"
        d.mkdir(parents=True)
        self._dir = d
        return d, str(d)

    def build(self, work: Path) -> Estate:
        need_root_libvirtd()
        need_images()
        self.networks(NETWORKS)
        vms = self.make_vms(work)
        conn = self.conn()
        try:
            host = conn.getHostname()
        finally:
            conn.close()
        return Estate(
            uri=self.uri,
            host=host,
            vms=vms,
            spec=QuarantineSpec("quarantine"),
            image=str(TEMPLATE),
            image_local=TEMPLATE,
            template=str(TEMPLATE),
            full_clone=str(full_clone()),
            unrelated=str(UNRELATED),
            missing=str(IMAGES / "vmw-r-no-such-disk.qcow2"),
        )

    def teardown(self) -> None:
        super().teardown()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)


class RemoteLibvirt(_Libvirt):
    """Host B: a second libvirtd reached over TCP; its disks are volumes of its own pool
    (``/var/lib/libvirt/images`` on B, B's state directory ``lib/images`` here)."""

    name = "libvirt-remote"
    prefix = "vmw-r-conf-b"
    pool_dir = "/var/lib/libvirt/images"

    def __init__(self, host: SecondHost) -> None:
        super().__init__()
        self.host = host
        self.uri = host.tcp_uri
        self.images = host.state / "lib" / "images"

    def disk_dir(self, work: Path) -> tuple[Path, str]:
        return self.images, self.pool_dir

    def _runnable(self) -> None:
        """Let B start VMs: QEMU cannot make its own mount namespace inside B's (libvirt's
        ``namespaces = []`` in B's qemu.conf, read at start: B is restarted once; the
        start script copies only files /etc/libvirt has, and it has no qemu.conf)."""
        (self.host.state / "etc" / "qemu.conf").write_text("namespaces = []\n")
        host = self.host
        subprocess.run(["bash", str(SCRIPT), "stop", str(host.state)], check=True, timeout=60)
        subprocess.run(
            ["bash", str(SCRIPT), "start", str(host.state), str(host.port), host.uuid,
             host.hostname],
            check=True, capture_output=True, timeout=300,
        )  # fmt: skip
        self._virtlogd()

    def _virtlogd(self) -> None:
        """QEMU's log daemon in B's mount namespace (B's ``/run/libvirt``), which
        ``second-libvirtd.sh`` does not start: without it B cannot start a VM."""
        pid = (self.host.state / "pid").read_text().strip()
        subprocess.run(
            ["nsenter", "-t", pid, "-m", "--",
             "virtlogd", "-d", "-p", "/run/libvirt/vmw-r-virtlogd.pid"],
            check=True, timeout=30,
        )  # fmt: skip

    def stop(self, vm_id: str) -> None:
        """Left running: B's whole namespace goes at the end. libvirtd is PID 1 of B's PID
        namespace and does not reap the daemonised QEMU, so a destroy there waits ~80 s for
        a zombie (virProcessKillPainfully) before it returns."""

    def teardown(self) -> None:
        # B's domains are not removed one by one (see stop): second_host discards B
        conn = self.conn()
        try:  # B is ours: its networks go (their bridges live in this machine's netns)
            for name in BRIDGES_B:
                with contextlib.suppress(libvirt.libvirtError):
                    conn.networkLookupByName(name).destroy()
        finally:
            conn.close()
        pidfile = self.host.state / "run" / "vmw-r-virtlogd.pid"
        if pidfile.is_file():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pidfile.read_text().strip()), signal.SIGTERM)

    def build(self, work: Path) -> Estate:
        need_images()
        self._runnable()
        self.images.mkdir(parents=True, exist_ok=True)
        # the same bytes as the local files, at B's paths (hard links: one filesystem)
        for src, name in ((TEMPLATE, "template.qcow2"), (full_clone(), "full-clone.qcow2"),
                          (UNRELATED, "unrelated.qcow2")):  # fmt: skip
            dst = self.images / name
            if not dst.exists():
                try:
                    os.link(src, dst)
                except OSError:
                    shutil.copyfile(src, dst)
        for bridge in BRIDGES_B.values():  # left by a B that died before its teardown
            subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False)
        self.networks(BRIDGES_B)
        vms = self.make_vms(work)
        conn = self.conn()
        try:
            pool = conn.storagePoolDefineXML(
                f"<pool type='dir'><name>vmw-r-images</name><target><path>{self.pool_dir}"
                "</path></target></pool>"
            )
            pool.create(0)
        finally:
            conn.close()
        return Estate(
            uri=self.uri,
            host=self.host.hostname,
            vms=vms,
            spec=QuarantineSpec("quarantine"),
            image=f"{self.pool_dir}/template.qcow2",
            image_local=TEMPLATE,
            template=f"{self.pool_dir}/template.qcow2",
            full_clone=f"{self.pool_dir}/full-clone.qcow2",
            unrelated=f"{self.pool_dir}/unrelated.qcow2",
            # a file that exists *here* at that path is still not B's disk
            missing=str(TEMPLATE),
        )

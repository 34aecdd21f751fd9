"""A real Dask cluster over a three-host estate, each host's worker in its own mount namespace.

The estate: three test-driver hosts (``host-a/b/c.xml``), their disks real small qcow2 guests
(ext4 of a Debian-like tree) under ``storage/<host>/``. A golden image and linked clones of
it, a reinstalled guest (its own keys, newer openssl) and a full copy nobody approved, so the
policy finds approved and unapproved templates, shared host keys across hosts and a stale
openssl. The cluster: ``dask scheduler`` with TLS (certificates made here with openssl, a CA
and one member certificate), and per host one ``vmwarden worker`` started under
``unshare --mount``: its namespace mounts a tmpfs over ``storage/`` and binds back only its
own host's directory, so a worker cannot see another host's disks even by path.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import qemu_img
from tests.engine.test_scan_inspect import _unique_tree
from tests.inspect.conftest import build_tree_image, write_guest_tree
from vmwarden.engine.content_lineage import sign_for_approval
from vmwarden.engine.fleetgen import (
    FleetDisk,
    FleetNic,
    FleetPool,
    FleetVM,
    FleetVolume,
    write_fleet,
)
from vmwarden.inspect.digest import digest_file

TAG = "vmw-d-"
HOSTS = ("host-a", "host-b", "host-c")
VENV_BIN = Path(sys.executable).parent
BOOT_SECONDS = 90.0


def need_root() -> None:
    """Skip, saying why, where root and unshare(1) are missing (the CI runs as root)."""
    if not shutil.which("unshare") or os.geteuid() != 0:
        pytest.skip("needs root and unshare(1): each worker gets its own mount namespace")


@dataclass(frozen=True)
class Certs:
    ca: Path
    cert: Path
    key: Path
    rogue_cert: Path  # signed by another CA: the cluster must refuse it
    rogue_key: Path


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


def make_certs(root: Path) -> Certs:
    """A CA, a member certificate it signs, and a rogue CA's certificate."""
    root.mkdir(parents=True, exist_ok=True)
    for name in ("ca", "rogue-ca"):
        _openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
            f"/CN={TAG}{name}", "-keyout", root / f"{name}.key", "-out", root / f"{name}.pem",
        )  # fmt: skip
    for name, ca in (("member", "ca"), ("rogue", "rogue-ca")):
        _openssl(
            "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={TAG}{name}",
            "-keyout", root / f"{name}.key", "-out", root / f"{name}.csr",
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-days", "2", "-in", root / f"{name}.csr", "-CA", root / f"{ca}.pem",
            "-CAkey", root / f"{ca}.key", "-CAcreateserial", "-out", root / f"{name}.pem",
        )  # fmt: skip
    return Certs(
        root / "ca.pem",
        root / "member.pem",
        root / "member.key",
        root / "rogue.pem",
        root / "rogue.key",
    )


@dataclass
class Estate:
    root: Path
    uris: list[str]
    policy: str
    storage: dict[str, Path]
    disks: dict[str, Path]  # VM name -> its disk
    golden: Path
    signature: dict[str, object]  # golden's content lineage signature (template approve)


def _vm(i: int, name: str, disk: Path) -> FleetVM:
    return FleetVM(
        uuid=f"d0d00000-0000-4000-8000-{i:012d}",
        name=f"{TAG}{name}",
        state="shutoff" if i % 2 else "running",
        disks=[FleetDisk(str(disk))],
        nics=[FleetNic(f"52:54:00:d0:00:{i:02x}", "prod")],
    )


def build_estate(root: Path) -> Estate:
    tree = root / "tree"
    write_guest_tree(tree)
    (tree / "var/lib/blob").write_bytes(os.urandom(6 << 20))  # content to sign for lineage
    other = _unique_tree(tree, root / "tree2")
    storage = {h: root / "storage" / h for h in HOSTS}
    for d in storage.values():
        d.mkdir(parents=True)
    golden = build_tree_image(storage["host-a"], tree, "golden.qcow2")
    shutil.copy(golden, storage["host-b"] / "golden.qcow2")  # each host its own copy
    disks: dict[str, Path] = {}
    plan = {
        "host-a": [("web-a1", "clone"), ("web-a2", "clone"), ("db-a", "unique")],
        "host-b": [("web-b1", "clone"), ("web-b2", "clone"), ("db-b", "unique")],
        "host-c": [("rogue-c", "copy"), ("db-c", "unique")],
    }
    for host, vms in plan.items():
        for name, kind in vms:
            path = storage[host] / f"{name}.qcow2"
            if kind == "clone":
                base = storage[host] / "golden.qcow2"
                qemu_img("create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", path)
            elif kind == "copy":
                shutil.copy(golden, path)
                qemu_img("resize", "-q", path, "+1M")  # a full copy: its own digest
            else:
                build_tree_image(storage[host], other, path.name)
            disks[name] = path
    forgotten = [build_tree_image(storage["host-c"], tree, "forgotten-c.qcow2")]  # no VM's
    uris = []
    i = 0
    for host, vms in plan.items():
        fleet = []
        for name, _ in vms:
            i += 1
            fleet.append(_vm(i, name, disks[name]))
        volumes = [FleetVolume(p.name, str(p)) for p in forgotten if p.parent == storage[host]]
        pool = FleetPool(f"{TAG}{host}", str(storage[host]), volumes)  # the host's image pool
        path = write_fleet(root / f"{host}.xml", fleet, networks=["prod"], pools=[pool])
        uris.append(f"test://{path}")
    policy = f"""\
version: 1
templates:
  - {{name: golden, digest: "{digest_file(golden)}"}}
rules:
  - {{name: unapproved, resource: vm, severity: high, filters: [not-approved-template]}}
  - {{name: shared-host-key, resource: vm, severity: high, filters: [duplicate-ssh-host-key]}}
  - name: stale-openssl
    resource: vm
    severity: medium
    filters: [{{type: stale-patches, baseline: {{openssl: "3.0.11-1~deb12u2"}}}}]
  - name: stale-forgotten
    resource: image
    severity: medium
    filters: [orphaned, {{type: stale-patches, baseline: {{openssl: "3.0.11-1~deb12u2"}}}}]
"""
    signature = sign_for_approval(golden)
    assert signature is not None, "the golden image has too little content to sign"
    return Estate(root, uris, policy, storage, disks, golden, signature)


@dataclass
class Cluster:
    """The scheduler and the workers the tests start; each worker is ``(host, Popen)``."""

    root: Path
    certs: Certs
    address: str
    scheduler: subprocess.Popen[bytes]
    storage: dict[str, Path]
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    spares: list[subprocess.Popen[bytes]] = field(default_factory=list)
    insecure: bool = False  # a lab cluster: tcp://, workers with --insecure
    death_timeout: int = 15  # seconds a worker waits for a (re)started scheduler

    def worker_command(self, host: str, *extra: str, tls: bool = True) -> list[str]:
        cmd = [
            str(VENV_BIN / "vmwarden"), "worker", "--scheduler", self.address, "--host", host,
            "--storage", str(self.storage.get(host, self.root)), "--slots", "1",
            "--death-timeout", str(self.death_timeout),
        ]  # fmt: skip
        if self.insecure:
            cmd.append("--insecure")
        elif tls:
            cmd += ["--tls-ca-file", str(self.certs.ca), "--tls-cert", str(self.certs.cert)]
            cmd += ["--tls-key", str(self.certs.key)]
        return cmd + list(extra)

    def start_worker(self, host: str, *, spare: bool = False) -> subprocess.Popen[bytes]:
        """``vmwarden worker`` for ``host`` in its own mount namespace (see the module doc);
        ``spare``: a second worker of the host, kept in ``spares``."""
        storage = self.storage[host]
        keep = self.root / f"keep-{host}"
        keep.mkdir(exist_ok=True)
        script = (
            f"mount --bind {storage} {keep} && mount -t tmpfs {TAG}ns {storage.parent} && "
            f'mkdir {storage} && mount --bind {keep} {storage} && exec "$@"'
        )
        log = (self.root / f"worker-{host}.log").open("ab")
        proc = subprocess.Popen(
            [
                *("unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh"),
                *self.worker_command(host),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        if spare:
            self.spares.append(proc)
        else:
            self.workers[host] = proc
        return proc

    def wait_for(self, hosts: set[str]) -> None:
        from vmwarden.distributed.placement import hosts_up

        deadline = time.monotonic() + BOOT_SECONDS
        with self.client() as client:
            while time.monotonic() < deadline:
                if hosts <= set(hosts_up(client.scheduler_info(n_workers=-1))):
                    return
                for host, proc in self.workers.items():
                    if proc.poll() is not None and host in hosts:
                        log = (self.root / f"worker-{host}.log").read_text()
                        raise AssertionError(f"worker of {host} exited:\n{log[-3000:]}")
                time.sleep(0.3)
        raise AssertionError(f"workers of {hosts} did not join within {BOOT_SECONDS} s")

    def client(self):  # type: ignore[no-untyped-def]
        from distributed import Client
        from vmwarden.distributed.security import TlsFiles, cluster_security

        files = TlsFiles(self.certs.ca, self.certs.cert, self.certs.key)
        security = cluster_security(
            self.address, None if self.insecure else files, insecure=self.insecure
        )
        return Client(self.address, security=security, set_as_default=False, timeout=30)

    def stop(self) -> None:
        everything = [*self.workers.values(), *self.spares, self.scheduler]
        for proc in everything:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in everything:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="session")
def estate(tmp_path_factory: pytest.TempPathFactory) -> Estate:
    need_root()  # the estate's VMs are read by workers in their own mount namespaces
    return build_estate(tmp_path_factory.mktemp("vmw-d-estate"))


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("vmw-d-certs"))


def start_scheduler(
    root: Path, certs: Certs | None, port: int = 0
) -> tuple[subprocess.Popen[bytes], str]:
    """``dask scheduler`` on 127.0.0.1 (TLS with ``certs``, else a lab's tcp://)."""
    info = root / f"scheduler-{port}.json"
    info.unlink(missing_ok=True)
    cmd = [str(VENV_BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--no-dashboard", "--scheduler-file", str(info)]
    if certs is not None:
        cmd += ["--protocol", "tls", "--tls-ca-file", str(certs.ca)]
        cmd += ["--tls-cert", str(certs.cert), "--tls-key", str(certs.key)]
    log = (root / "scheduler.log").open("ab")
    scheduler = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + BOOT_SECONDS
    while not info.exists() and time.monotonic() < deadline:
        assert scheduler.poll() is None, (root / "scheduler.log").read_text()
        time.sleep(0.2)
    return scheduler, json.loads(info.read_text())["address"]


@pytest.fixture(scope="session")
def cluster(estate: Estate, certs: Certs) -> Iterator[Cluster]:
    """A TLS scheduler and one worker per host, up before the first test uses them."""
    scheduler, address = start_scheduler(estate.root, certs)
    running = Cluster(estate.root, certs, address, scheduler, estate.storage)
    try:
        for host in HOSTS:
            running.start_worker(host)
        running.wait_for(set(HOSTS))
        yield running
    finally:
        running.stop()

"""The demo's vSphere estate: vcsim (govmomi's vSphere API simulator) with three VMs.

When the vcsim launcher can be built here (Go and Debian's govmomi sources: ``make deps``),
``vsphere_estate(workdir)`` builds it once (cached by source hash under the user cache dir,
~30 s the first time), starts it on a free loopback port with a login made up for this run
(no default credentials), puts real guest disks on its datastore (the demo's template and
its unvetted base image, converted to VMDKs over vcsim's empty placeholder ``disk1.vmdk``
files: vcsim keeps each datastore in a real directory under ``$TMPDIR``) and gives its VMs
their vmwarden metadata through the vSphere connector itself (custom attributes), as an
administrator would:

- ``DC0_H0_VM0``: registered, owner alice, classification internal, on the internal
  portgroup (``DC0_DVPG0``): approved, nothing to report about it;
- ``DC0_H1_VM0``: no metadata at all, built from the unvetted base image: a rogue VM;
- ``DC0_H2_VM0``: registered, classification pci, but on the internal portgroup: outside
  its zone (quarantined with ``--enforce``: moved to ``DC0_DVPG1``, the quarantine portgroup).

The approved VMs' disks are byte copies of the template's VMDK (full clones), which
``approve_template`` puts in the demo store's catalog as ``vmwarden template approve`` does
(the demo's tiny template has too little content for a lineage signature, so copies are
approved by digest). One VM per ESXi host: vcsim gives the VMs of one
host the same MAC. When vcsim cannot be built, the reason is one line and the demo runs
libvirt only. The simulator stops when the ``with`` block ends.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from vmwarden.connectors.base import open_connector
from vmwarden.engine.content_lineage import FINGERPRINT_KEY, sign_for_approval
from vmwarden.engine.demo_images import ROGUE_BASE, TEMPLATE
from vmwarden.errors import VmwardenError
from vmwarden.inspect.digest import digest_file, fingerprint
from vmwarden.model.vm import VmMeta

_REPO = Path(__file__).resolve().parents[3]
BUILD_SCRIPT = _REPO / "scripts" / "build-vcsim.sh"
GOVMOMI = Path("/usr/share/gocode/src/github.com/vmware/govmomi/simulator")
USER = "vmw-demo"
PASSWORD_ENV = "VMWARDEN_VSPHERE_PASSWORD"

# VM name → (metadata, base image of its disk, the rules the demo policy must give it)
# what the demo policy finds on a copy of the unvetted base (engine.demo's rogue VMs)
ROGUE_RULES = ("unapproved-template", "forbidden-software", "ssh-root-login", "no-time-sync",
               "shared-password-hash", "vulnerable-package")  # fmt: skip
_VMS: dict[str, tuple[VmMeta, str, list[str]]] = {
    "DC0_H0_VM0": (VmMeta(owner="alice", classification="internal", registered=True),
                   TEMPLATE, []),
    "DC0_H1_VM0": (VmMeta(), ROGUE_BASE, [*ROGUE_RULES, "unregistered-vm"]),
    "DC0_H2_VM0": (VmMeta(owner="bob", classification="pci", registered=True),
                   TEMPLATE, ["outside-zone"]),
}  # fmt: skip


@dataclass(slots=True)
class VsphereDemo:
    """The running simulator's URI (None when not included) and the line saying so."""

    uri: str | None
    note: str
    expected: dict[str, list[str]] = field(default_factory=dict)
    template: Path | None = None  # the template VMDK to approve (``approve_template``)


def unavailable() -> str | None:
    """Why vcsim cannot be built here, or None."""
    if not BUILD_SCRIPT.exists():
        return "no vcsim launcher in this installation (run the demo from a source checkout)"
    if shutil.which("go") is None or not GOVMOMI.is_dir():
        return "Go or Debian's golang-github-vmware-govmomi-dev is missing (make deps)"
    return None


def _build() -> str:
    cache = Path(platformdirs.user_cache_dir("vmwarden")) / "vcsim"
    cache.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GOCACHE": os.environ.get("GOCACHE", str(cache / "go-build"))}
    proc = subprocess.run(
        ["bash", str(BUILD_SCRIPT), str(cache)],
        capture_output=True, text=True, check=False, env=env, timeout=600,
    )  # fmt: skip
    if proc.returncode != 0:
        raise VmwardenError(f"vcsim build failed: {proc.stderr.strip()[-300:]}")
    return proc.stdout.strip().splitlines()[-1]


def _put_disks(tmp: Path, templates: Path, workdir: Path) -> Path:
    """Each VM's ``disk1.vmdk`` replaced by a real guest disk: a byte copy of the template
    made a monolithicSparse VMDK (full clones; returned: what the demo approves), or the
    unvetted base converted for the rogue VM."""
    (datastore,) = tmp.glob("govcsim-DC0-LocalDS_0-*")
    golden = workdir / "vsphere-templates" / f"{TEMPLATE}.vmdk"
    golden.parent.mkdir(exist_ok=True)
    for base, target in ((TEMPLATE, golden), (ROGUE_BASE, tmp / f"{ROGUE_BASE}.vmdk")):
        target.unlink(missing_ok=True)
        subprocess.run(
            ["qemu-img", "convert", "-O", "vmdk", "-o", "subformat=monolithicSparse",
             str(templates / f"{base}.qcow2"), str(target)],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
    for name, (_, base, _) in _VMS.items():
        source = golden if base == TEMPLATE else tmp / f"{ROGUE_BASE}.vmdk"
        shutil.copyfile(source, datastore / name / "disk1.vmdk")
    return golden


def approve_template(store: Any, image: Path) -> None:
    """The demo's template VMDK in the store's catalog, as ``vmwarden template approve``
    records it (digest; content signature when the image has enough content for one)."""
    fp = {**fingerprint(image), FINGERPRINT_KEY: sign_for_approval(image)}
    store.approve_template(f"{TEMPLATE}-vmdk", digest_file(image), str(image), fp, "demo")


@contextmanager
def vsphere_estate(
    workdir: Path, templates: Path, say: Callable[[str], None] | None = None
) -> Iterator[VsphereDemo]:
    """A running demo vCenter (vcsim) for the ``with`` block, or why there is none;
    ``templates`` holds the demo's base images (``build_demo_estate``'s); ``say`` is told
    before the (first, slow) build."""
    why = unavailable()
    if why is not None:
        yield VsphereDemo(None, f"vSphere: not included ({why}); libvirt only")
        return
    if say is not None:
        say("vSphere: starting vcsim (built once from Debian's govmomi, ~1 min the first time)")
    try:
        binary = _build()
    except (VmwardenError, OSError, subprocess.TimeoutExpired) as exc:
        yield VsphereDemo(None, f"vSphere: not included ({exc}); libvirt only")
        return
    password = secrets.token_urlsafe(18)
    tmp = workdir / "vcsim"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    proc = subprocess.Popen(
        [binary, "-port", "0", "-user", USER, "-pass", password, "-cluster", "0",
         "-standalone-host", str(len(_VMS)), "-vm", "1", "-pg", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "TMPDIR": str(tmp)},
    )  # fmt: skip
    old = os.environ.get(PASSWORD_ENV)
    try:
        assert proc.stdout is not None
        url = urllib.parse.urlsplit(proc.stdout.readline().strip())
        if url.scheme != "https" or url.port is None:
            yield VsphereDemo(None, "vSphere: not included (vcsim did not start); libvirt only")
            return
        uri = f"vsphere://{USER}@127.0.0.1:{url.port}?insecure=1"
        os.environ[PASSWORD_ENV] = password  # the sweep reads it, as an operator sets it
        try:
            golden = _put_disks(tmp, templates, workdir)
            with open_connector(uri) as conn:
                by_name = {vm.name: vm for vm in conn.inventory().vms}
                for name, (meta, _, _) in _VMS.items():
                    conn.set_metadata(by_name[name].id, meta)
        except (VmwardenError, KeyError, ValueError, subprocess.SubprocessError) as exc:
            yield VsphereDemo(None, f"vSphere: not included (set-up failed: {exc}); libvirt only")
            return
        yield VsphereDemo(
            uri,
            f"vSphere: vcsim at 127.0.0.1:{url.port} (self-signed, insecure=1), 3 VMs: "
            "DC0_H0_VM0 approved, DC0_H1_VM0 unregistered, DC0_H2_VM0 pci on the internal "
            "portgroup",
            {name: rules for name, (_, _, rules) in _VMS.items() if rules}
            # datastore files have no POSIX mode: world-readable is unknown, said per disk
            | {"disk1.vmdk": ["world-readable-image"]},
            golden,
        )
    finally:
        if old is None:
            os.environ.pop(PASSWORD_ENV, None)
        else:
            os.environ[PASSWORD_ENV] = old
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)

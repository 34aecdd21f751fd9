"""vSphere disks (#13.3): a VMDK inspected over the datastore's HTTPS file access vs locally,
side by side in one run.

vcsim (``scripts/build-vcsim.sh``) serves its datastore's real directory at ``/folder/…``;
the Debian image is converted there to a monolithicSparse VMDK (``qemu-img convert``).
Rows: a warm ``InspectorPool`` on that VMDK as a local file (the floor), and the same pool
inspecting the same VMDK through ``VsphereConnector.open_disk`` (ranged HTTPS GETs with the
session cookie, TLS on loopback; a fresh connection each time, so the block cache starts
cold and the timing includes the TLS handshake, the datastore's datacenter lookup, the HEAD
and the chain's header reads: the target is judged on this row). A third row times the same
over one connection already open (a sweep's next disk), its block cache dropped. ``reads``
is the HTTPS requests per inspection; ``read_pct`` the bytes transferred as a percentage of
what dissect asked for. Then the VMDK's sha256 through one streamed GET vs locally.
"""

from __future__ import annotations

import os
import secrets
import shutil
import statistics
import subprocess
import time
import urllib.parse
from pathlib import Path
from typing import Any

from bench.common import REPO
from bench.inspection import IMAGE

FOLDER = "vmw-bench-vsphere"


def _row(name: str, walls: list[float]) -> dict[str, Any]:
    med = statistics.median(walls)
    return {"name": name, "min": min(walls), "median": med, "max": max(walls), "n": len(walls)}


def _start_vcsim(password: str) -> tuple[subprocess.Popen[str], str, int]:
    built = subprocess.run(
        ["bash", str(REPO / "scripts/build-vcsim.sh")], check=True, capture_output=True, text=True
    )
    binary = built.stdout.strip().splitlines()[-1]
    proc = subprocess.Popen(
        [binary, "-port", "0", "-user", "vmw-bench", "-pass", password],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    url = urllib.parse.urlsplit(proc.stdout.readline().strip())
    if not url.hostname or not url.port:
        proc.kill()
        raise RuntimeError("vcsim did not start")
    return proc, url.hostname, url.port


def _datastore_dir(connector: Any) -> tuple[str, Path]:
    from pyVmomi import vim

    content = connector._si.RetrieveContent()
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.Datastore], True)
    try:
        ds = view.view[0]
        return str(ds.name), Path(ds.info.url)
    finally:
        view.DestroyView()


def run(repeats: int = 5) -> list[dict[str, Any]]:
    if not IMAGE.exists():
        return [{"name": "vSphere VMDK inspection", "note": f"not measured: no {IMAGE}"}]
    if shutil.which("go") is None or shutil.which("qemu-img") is None:
        return [{"name": "vSphere VMDK inspection", "note": "not measured: no go / qemu-img"}]
    from vmwarden.connectors.vsphere.connection import VsphereConnector

    password = secrets.token_hex(8)
    os.environ["VMWARDEN_VSPHERE_PASSWORD"] = password
    proc, host, port = _start_vcsim(password)
    try:
        uri = f"vsphere://vmw-bench@{host}:{port}?insecure=1"
        with VsphereConnector(uri) as connector:
            name, ds_dir = _datastore_dir(connector)
        local = ds_dir / FOLDER / "debian.vmdk"
        local.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["qemu-img", "convert", "-O", "vmdk", str(IMAGE), str(local)],
            check=True,
            capture_output=True,
        )
        path = f"[{name}] {FOLDER}/debian.vmdk"
        rows = _measure(uri, path, local, repeats)
        rows += _digests(uri, path, local)
        return rows
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _measure(uri: str, path: str, local: Path, repeats: int) -> list[dict[str, Any]]:
    from vmwarden.connectors.vsphere.connection import VsphereConnector
    from vmwarden.inspect.ranged_chain import resolve_ranged_chain
    from vmwarden.inspect.sandbox import InspectorPool

    local_walls: list[float] = []
    remote_walls: list[float] = []
    transferred: list[int] = []
    requests: list[int] = []
    warm_walls: list[float] = []
    needed = 0
    with InspectorPool(workers=1, fingerprint_key=b"k" * 32, timeout=300) as pool:
        pool.inspect(local)  # starts the worker; untimed
        for _ in range(repeats):
            t0 = time.perf_counter()
            facts = pool.inspect(local)
            local_walls.append(time.perf_counter() - t0)
            needed = pool.stats[str(local)]["bytes_read"]
            with VsphereConnector(uri) as connector:  # login untimed: a sweep logs in once
                t0 = time.perf_counter()
                chain = resolve_ranged_chain(path, connector.open_disk, fmt="vmdk")
                remote = pool.inspect_ranged(
                    "vsphere:debian",
                    chain.readers,
                    [i.format for i in chain.infos],
                    encrypted=False,
                )
                remote_walls.append(time.perf_counter() - t0)
                transferred.append(sum(r.transferred for r in chain.readers))
                requests.append(sum(r.requests for r in chain.readers))
            assert remote.packages == facts.packages, "facts over HTTPS differ from local"
        with VsphereConnector(uri) as connector:  # one connection for all: a sweep's disks
            chain = resolve_ranged_chain(path, connector.open_disk, fmt="vmdk")
            for _ in range(repeats):
                for reader in chain.readers:
                    reader.drop_cache()  # type: ignore[attr-defined]
                t0 = time.perf_counter()
                chain = resolve_ranged_chain(path, connector.open_disk, fmt="vmdk")
                pool.inspect_ranged(
                    "vsphere:debian",
                    chain.readers,
                    [i.format for i in chain.infos],
                    encrypted=False,
                )
                warm_walls.append(time.perf_counter() - t0)
    floor = _row("inspect, local VMDK (warm worker)", local_walls)
    floor["note"] = f"dissect read {needed / 2**20:.2f} MiB"
    med = statistics.median(remote_walls)
    row = _row("inspect, VMDK over datastore HTTPS (warm worker)", remote_walls)
    row.update(
        {
            "ratio_to_floor": med / floor["median"],
            "reads": statistics.median(requests),
            "read_pct": 100 * statistics.median(transferred) / max(1, needed),
            "note": (
                f"{statistics.median(transferred) / 2**20:.2f} MiB transferred for "
                f"{needed / 2**20:.2f} MiB dissect read; vcsim on loopback TLS; includes HEAD"
            ),
        }
    )
    warm = _row("inspect, VMDK over HTTPS, connection already open (warm worker)", warm_walls)
    warm["ratio_to_floor"] = warm["median"] / floor["median"]
    warm["note"] = "a sweep's next disk: logged in, datacenter known, HTTPS kept alive; cold cache"
    return [floor, row, warm]


def _digests(uri: str, path: str, local: Path) -> list[dict[str, Any]]:
    from vmwarden.connectors.vsphere.connection import VsphereConnector
    from vmwarden.inspect.digest import digest_file

    t0 = time.perf_counter()
    local_digest = digest_file(local)
    local_s = time.perf_counter() - t0
    with VsphereConnector(uri) as connector:
        t0 = time.perf_counter()
        reader = connector.open_disk(path)
        remote_digest, _ = reader.digest()  # type: ignore[attr-defined]
        remote_s = time.perf_counter() - t0
    same = "same digest" if remote_digest == local_digest else "**digests differ**"
    return [
        _row("VMDK sha256, local file", [local_s]),
        {
            **_row("VMDK sha256, one streamed HTTPS GET", [remote_s]),
            "ratio_to_floor": remote_s / local_s,
            "note": f"{reader.size / 2**20:.0f} MiB; {same}",
        },
    ]

"""OVAL (#15.1): Debian 11's SSG OVAL (487 definitions) on the Debian 12 minbase image.

Rows, each the median of ``repeats`` runs:

- vmwarden in a warm sandboxed worker on the qcow2 itself (dissect, no mount; the document
  parsed once per worker), with the bytes it read from the image;
- vmwarden over the mounted root (``LocalRootFiles``: what the OpenSCAP comparison test uses);
- ``OSCAP_PROBE_ROOT=<root> oscap oval eval`` on the same mounted root, same variables;
- the whole OpenSCAP route a user runs on a qcow2: convert to raw, loop device, mount, eval.

Both tools get the XCCDF's default external values. Needs root (loop devices), oscap and
ssg-debian (scripts/install-deps.sh) and the test image.
"""

from __future__ import annotations

import json
import secrets
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.scap.oval_reference import mounted_copy, oval_variables_file, xccdf_defaults

from vmwarden.inspect.sandbox import InspectorPool
from vmwarden.scap.oval import evaluate, load_oval
from vmwarden.scap.oval_localfs import LocalRootFiles
from vmwarden.scap.oval_worker import HANDLERS, KIND, request_payload

CONTENT = Path("/usr/share/xml/scap/ssg/content")
OVAL = CONTENT / "ssg-debian11-oval.xml"
XCCDF = CONTENT / "ssg-debian11-xccdf.xml"
IMAGE = Path("/var/cache/vmwarden-test/debian-minbase.qcow2")


def _timed(fn: Callable[[], Any], times: int) -> tuple[list[float], Any]:
    walls, last = [], None
    for _ in range(times):
        t0 = time.perf_counter()
        last = fn()
        walls.append(time.perf_counter() - t0)
    return walls, last


def _row(name: str, walls: list[float], note: str = "", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "min": min(walls),
        "median": statistics.median(walls),
        "max": max(walls),
        "n": len(walls),
        **extra,
        "note": note,
    }


def _oscap(root: Path, variables: Path, work: Path) -> None:
    subprocess.run(
        ["oscap", "oval", "eval", "--variables", str(variables), str(OVAL)],
        env={"OSCAP_PROBE_ROOT": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        check=False,
        cwd=work,
    )


def run(repeats: int = 3) -> list[dict[str, Any]]:
    if not (OVAL.is_file() and IMAGE.is_file()):
        raise RuntimeError(f"needs {OVAL} (ssg-debian) and {IMAGE}")
    external = xccdf_defaults(XCCDF)
    payload = request_payload(OVAL.read_bytes(), external_vars=external)
    rows = []
    pool = InspectorPool(
        workers=1, fingerprint_key=secrets.token_bytes(32), handlers=HANDLERS, timeout=600
    )
    with pool:
        pool.run(IMAGE, KIND, payload)  # warm: the worker imported and parsed the document
        walls, answer = _timed(lambda: pool.run(IMAGE, KIND, payload), repeats)
    stats = answer["stats"]
    rows.append(
        _row(
            "vmwarden, warm worker on the qcow2 (dissect, no mount)",
            walls,
            f"{stats['bytes_read'] / 1e6:.1f} MB read of {stats['image_bytes'] / 1e6:.0f} MB",
            read_pct=100 * stats["bytes_read"] / stats["image_bytes"],
        )
    )
    doc = load_oval(OVAL)
    with tempfile.TemporaryDirectory(prefix="vmwarden-bench-oval-") as tmp:
        work = Path(tmp)
        variables = oval_variables_file(OVAL, external, work / "variables.xml")
        with mounted_copy(IMAGE, work) as root:
            ours, _ = _timed(
                lambda: evaluate(doc, LocalRootFiles(root), external_vars=external), repeats
            )
            theirs, _ = _timed(lambda: _oscap(root, variables, work), repeats)
        rows.append(_row("vmwarden over the mounted root (LocalRootFiles)", ours))
        ratio = statistics.median(theirs) / statistics.median(walls)
        rows.append(
            _row(
                "oscap oval eval, OSCAP_PROBE_ROOT=mounted root",
                theirs,
                f"{ratio:.1f}x vmwarden's warm worker on the qcow2; "
                f"{statistics.median(theirs) / statistics.median(ours):.1f}x vmwarden on the root",
            )
        )

        def route() -> None:
            sub = Path(tempfile.mkdtemp(dir=work))
            with mounted_copy(IMAGE, sub) as root:
                _oscap(root, variables, sub)

        whole, _ = _timed(route, repeats)
        rows.append(_row("OpenSCAP route on the qcow2: convert + loop + mount + eval", whole))
    return rows


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))

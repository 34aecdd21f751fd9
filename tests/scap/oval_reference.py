"""OpenSCAP as the reference for the OVAL evaluator: run ``oscap oval eval`` on a mounted root
with the same external variable values vmwarden gets (the XCCDF defaults), and read back its
per-definition results. Also the hardened copy of the Debian image (a remediation's edits).
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lxml import etree

XCCDF_NS = "http://checklists.nist.gov/xccdf/1.2"
_LINE = re.compile(r"^Definition (\S+): (.+)$")


def _run(*argv: str | Path) -> str:
    done = subprocess.run([str(a) for a in argv], check=True, capture_output=True, text=True)
    return done.stdout


def xccdf_defaults(xccdf: Path) -> dict[str, list[str]]:
    """Each exported OVAL variable's default XCCDF value (the value without a selector)."""
    root = etree.parse(str(xccdf)).getroot()
    defaults: dict[str, str] = {}
    for value in root.iter(f"{{{XCCDF_NS}}}Value"):
        plain = [v for v in value.findall(f"{{{XCCDF_NS}}}value") if not v.get("selector")]
        if plain:
            defaults[value.get("id", "")] = plain[0].text or ""
    out: dict[str, list[str]] = {}
    for exp in root.iter(f"{{{XCCDF_NS}}}check-export"):
        vid = exp.get("value-id", "")
        if vid in defaults:
            out[exp.get("export-name", "")] = [defaults[vid]]
    return out


def oval_variables_file(oval: Path, values: dict[str, list[str]], out: Path) -> Path:
    """An OVAL variables document giving ``values`` (datatypes as the OVAL file declares)."""
    doc = etree.parse(str(oval)).getroot()
    types = {
        el.get("id"): el.get("datatype", "string")
        for el in doc.iter("{http://oval.mitre.org/XMLSchema/oval-definitions-5}external_variable")
    }
    ns = "http://oval.mitre.org/XMLSchema/oval-variables-5"
    common = "http://oval.mitre.org/XMLSchema/oval-common-5"
    root = etree.Element(f"{{{ns}}}oval_variables", nsmap={None: ns, "oval": common})
    gen = etree.SubElement(root, f"{{{ns}}}generator")
    etree.SubElement(gen, f"{{{common}}}schema_version").text = "5.11.2"
    etree.SubElement(gen, f"{{{common}}}timestamp").text = "2026-01-01T00:00:00"
    variables = etree.SubElement(root, f"{{{ns}}}variables")
    for var_id, vals in values.items():
        if var_id not in types:
            continue
        el = etree.SubElement(
            variables, f"{{{ns}}}variable", id=var_id, datatype=types[var_id], comment="xccdf"
        )
        for v in vals:
            etree.SubElement(el, f"{{{ns}}}value").text = v
    etree.ElementTree(root).write(str(out), xml_declaration=True, encoding="UTF-8")
    return out


def oscap_results(root: Path, oval: Path, variables: Path, workdir: Path) -> dict[str, str]:
    """``oscap oval eval`` of ``oval`` on the mounted ``root``: definition id -> result."""
    done = subprocess.run(
        ["oscap", "oval", "eval", "--variables", str(variables), str(oval)],
        env={"OSCAP_PROBE_ROOT": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
        cwd=workdir,
    )
    found = {}
    for line in done.stdout.splitlines():
        m = _LINE.match(line.strip())
        if m:
            found[m.group(1)] = m.group(2)
    if not found:
        raise RuntimeError(f"oscap gave no results: {done.stderr[-600:]}")
    return found


@contextmanager
def mounted_copy(image: Path, workdir: Path, edit: object = None) -> Iterator[Path]:
    """A raw copy of ``image``'s root partition, edited (``edit(root)`` on a read-write mount)
    and then mounted read-only; loop device and mount are undone at exit."""
    raw = workdir / "disk.raw"
    _run("qemu-img", "convert", "-q", "-O", "raw", image, raw)
    table = json.loads(_run("sfdisk", "-J", raw))["partitiontable"]
    start = int(table["partitions"][0]["start"]) * int(table.get("sectorsize", 512))
    mnt = workdir / "mnt"
    mnt.mkdir(exist_ok=True)
    if edit is not None:
        loop = _run("losetup", "-f", "--show", "-o", str(start), raw).strip()
        try:
            _run("mount", loop, mnt)
            try:
                edit(mnt)  # type: ignore[operator]
            finally:
                _run("umount", mnt)
        finally:
            subprocess.run(["losetup", "-d", loop], check=False)
    loop = _run("losetup", "-r", "-f", "--show", "-o", str(start), raw).strip()
    try:
        _run("mount", "-o", "ro,noload", loop, mnt)
        try:
            yield mnt
        finally:
            subprocess.run(["umount", str(mnt)], check=False)
    finally:
        subprocess.run(["losetup", "-d", loop], check=False)
        raw.unlink(missing_ok=True)

"""Nothing outside ``connectors/<platform>/`` knows a platform (issue #12, DESIGN.md
Architecture): a walk over every module's AST, imports inside functions included.

- platform SDKs (libvirt, libvirtaio, pyVmomi, boto3, botocore) are imported only by the
  platform's own connector package;
- XML parsers (lxml, xml.etree, xml.dom, xml.sax parsing, defusedxml) only there too: outside,
  the only XML read is SCAP content (``scap/``: XCCDF and OVAL, standard formats that belong
  to no platform). Domain XML, vSphere specs and EC2 JSON are connector business.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import vmwarden
from vmwarden.connectors.base import registered_schemes

SRC = Path(vmwarden.__file__).parent
SDKS = ("libvirt", "libvirtaio", "pyVmomi", "pyvmomi", "vmware", "boto3", "botocore")
XML_PARSERS = ("lxml", "xml.etree", "xml.dom", "xml.parsers", "defusedxml")
# xml.sax.saxutils (escaping when *writing* XML) parses nothing; xml.sax's parsers do.
XML_PARSERS_SAX = ("xml.sax",)
XML_READERS = {"scap"}  # SCAP content (XCCDF/OVAL), not a platform's format


def _imports(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _platform_package(rel: Path) -> bool:
    """``connectors/<platform>/…`` (not ``connectors/base.py`` or ``connectors/locality.py``)."""
    return len(rel.parts) >= 3 and rel.parts[0] == "connectors"


def _violations() -> list[str]:
    bad = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        if _platform_package(rel):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for line, name in _imports(tree):
            sdk = _under(name, SDKS)
            xml = _under(name, XML_PARSERS) or (
                _under(name, XML_PARSERS_SAX) and name != "xml.sax.saxutils"
            )
            if sdk or (xml and rel.parts[0] not in XML_READERS):
                what = "a platform SDK" if sdk else "an XML parser"
                bad.append(f"{rel}:{line} imports {name} ({what})")
    return bad


def test_no_module_outside_a_connector_package_imports_a_platform_sdk_or_parses_xml() -> None:
    assert _violations() == []


def _platform_imports() -> list[str]:
    """Modules outside ``connectors/`` that import a platform's connector package: the core
    reaches a platform only through the contract (``connectors.base``: ``open_connector``,
    ``open_disk``, the registries), so a new platform is one package and nothing else."""
    platforms = sorted(
        p.name for p in (SRC / "connectors").iterdir() if p.is_dir() and p.name != "__pycache__"
    )
    prefixes = tuple(f"vmwarden.connectors.{name}" for name in platforms)
    bad = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        if rel.parts[0] == "connectors":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        bad += [
            f"{rel}:{line} imports {name}"
            for line, name in _imports(tree)
            if _under(name, prefixes)
        ]
    return bad


def test_nothing_outside_connectors_imports_a_platform_connector_package() -> None:
    assert _platform_imports() == []


def test_the_walk_finds_what_it_forbids(tmp_path: Path) -> None:
    """The checker itself: function-local and dotted imports count; saxutils does not."""
    code = (
        "import os\nfrom xml.sax.saxutils import escape\n"
        "def f():\n    import libvirt\n    from lxml import etree\n    import boto3.session\n"
    )
    names = [n for _, n in _imports(ast.parse(code))]
    assert [n for n in names if _under(n, SDKS)] == ["libvirt", "boto3.session"]
    assert [n for n in names if _under(n, XML_PARSERS)] == ["lxml"]
    assert _platform_package(Path("connectors/libvirt/events.py"))
    assert not _platform_package(Path("connectors/base.py"))
    late = "def f():\n    from vmwarden.connectors.libvirt.volumes import RemoteVolumes\n"
    assert [n for _, n in _imports(ast.parse(late))] == ["vmwarden.connectors.libvirt.volumes"]


# A literal that is a connection URI or a URI-scheme prefix of a platform ("aws://",
# "qemu:///system", "libvirt-volume://") is platform knowledge in code; prose (help examples,
# hints, docstrings) is not matched: it has spaces around the URI.
_URI_LITERAL = re.compile(r"^([a-z][a-z0-9+.-]*)://")
_PLATFORM_WORD = re.compile(r"libvirt|qemu|vsphere|vcenter|esx|aws|ec2|ebs")
# Where a literal URI is still expected, and why. Shrink this; never grow it without a reason.
URI_LITERALS_ALLOWED = {
    "engine/demo.py": "the demo builds a libvirt test-driver estate on purpose",
    "engine/demo_vsphere.py": "the vSphere demo builds a vcsim estate on purpose",
    "engine/estate_files.py": "generates test-driver estates for tests and benches, as fleetgen",
    "cli/inspect_disk.py": "`inspect ebs:` picks the EC2 connection (to come from the connector)",
}


def _literals(tree: ast.AST) -> list[tuple[int, str]]:
    """String constants that are not docstrings, f-string parts included."""
    docs = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs
    ]


def _uri_literals(allowed: dict[str, str]) -> list[str]:
    schemes = set(registered_schemes())
    bad = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        if _platform_package(rel) or str(rel) in allowed:
            continue
        for line, text in _literals(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            m = _URI_LITERAL.match(text)
            scheme = m.group(1) if m else ""
            if m and (scheme in schemes or _PLATFORM_WORD.search(scheme)):
                bad.append(f"{rel}:{line} has the literal {text!r}")
    return bad


def test_nothing_outside_connectors_spells_a_platform_uri() -> None:
    """#12: e.g. the digest cache's key for another host's file was "libvirt-volume://…"."""
    assert _uri_literals(URI_LITERALS_ALLOWED) == []


def test_the_uri_literal_rule_finds_what_it_forbids() -> None:
    code = 'x = f"libvirt-volume://{h}{p}"\ny = "aws://"\nz = "-c qemu:///system, say"\n'
    found = sorted(t for _, t in _literals(ast.parse(code)) if _URI_LITERAL.match(t))
    assert found == ["aws://", "libvirt-volume://"]
    assert _uri_literals({}) != []  # the allowed places do hold such literals

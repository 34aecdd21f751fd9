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
from pathlib import Path

import vmwarden

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

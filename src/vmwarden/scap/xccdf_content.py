"""XCCDF content read from an SCAP 1.3 source datastream: benchmark, profiles, items, CPE.

Datastreams are the form SCAP content ships in (Debian's ``ssg-*`` packages, NIST's
NCP): one XML file holding the XCCDF benchmark, its OVAL checks and the CPE dictionary,
tied together by component references and XML catalogs. This module only *reads* them
into plain dataclasses; evaluating rules and scoring is ``vmwarden.scap.xccdf``.

The file comes from the user (or from a package) and is treated as hostile: no entity
expansion, no DTD, no network, and every missing attribute is a clear ``ContentError``
rather than a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree

from vmwarden.errors import VmwardenError

DS = "http://scap.nist.gov/schema/scap/source/1.2"
XCCDF = "http://checklists.nist.gov/xccdf/1.2"
CPE_DICT = "http://cpe.mitre.org/dictionary/2.0"
CPE_LANG = "http://cpe.mitre.org/language/2.0"
CAT = "urn:oasis:names:tc:entity:xmlns:xml:catalog"
XLINK = "http://www.w3.org/1999/xlink"
OVAL_SYSTEM = "http://oval.mitre.org/XMLSchema/oval-definitions-5"
OVAL_DEFS = "http://oval.mitre.org/XMLSchema/oval-definitions-5"


class ContentError(VmwardenError):
    """The datastream is not SCAP content vmwarden can use (says what and where)."""

    exit_code = 2  # the user's input, like an invalid policy


@dataclass(frozen=True)
class Check:
    """One ``<check>``: which checking system, which OVAL definition(s), which values."""

    system: str
    negate: bool = False
    multi_check: bool = False
    selector: str = ""
    refs: tuple[tuple[str, str], ...] = ()  # (href, definition id or "")
    exports: tuple[tuple[str, str], ...] = ()  # (XCCDF value id, OVAL variable id)
    complex: bool = False  # a complex-check: not supported, reported as notchecked


@dataclass
class Item:
    """A Rule or Group: the parts selection, applicability and scoring need."""

    id: str
    kind: str  # "rule" or "group"
    title: str = ""
    selected: bool = True
    weight: float = 1.0
    role: str = "full"
    severity: str = "unknown"
    platforms: tuple[str, ...] = ()
    cluster_id: str = ""
    checks: tuple[Check, ...] = ()
    children: list[Item] = field(default_factory=list)


@dataclass
class Value:
    """An XCCDF Value: its values by selector ("" is the default)."""

    id: str
    type: str = "string"
    values: dict[str, str] = field(default_factory=dict)
    cluster_id: str = ""


@dataclass
class Profile:
    """A named tailoring: selections, refined values and rules, ``extends`` a parent."""

    id: str
    title: str = ""
    extends: str = ""
    selects: list[tuple[str, bool]] = field(default_factory=list)
    refine_values: list[tuple[str, str]] = field(default_factory=list)  # (value id, selector)
    set_values: list[tuple[str, str]] = field(default_factory=list)  # (value id, value)
    refine_rules: list[tuple[str, dict[str, str]]] = field(default_factory=list)


@dataclass(frozen=True)
class LogicalTest:
    """A CPE applicability-language test: AND/OR over CPE names and nested tests."""

    operator: str = "AND"
    negate: bool = False
    names: tuple[str, ...] = ()  # fact-ref CPE names
    checks: tuple[tuple[str, str], ...] = ()  # check-fact-ref (href, definition id)
    tests: tuple[LogicalTest, ...] = ()


@dataclass
class Benchmark:
    """Everything of the datastream the XCCDF layer evaluates."""

    id: str
    title: str
    version: str
    platforms: tuple[str, ...]
    items: list[Item]
    values: dict[str, Value]
    profiles: dict[str, Profile]
    cpe_platforms: dict[str, LogicalTest]  # "#id" platforms of the benchmark
    cpe_names: dict[str, tuple[str, str]]  # CPE name -> (href, OVAL definition id)
    oval: dict[str, etree._Element]  # check href -> <oval_definitions> root

    def walk(self) -> list[tuple[Item, tuple[Item, ...]]]:
        """Every item in document order with its ancestor groups (outermost first)."""
        out: list[tuple[Item, tuple[Item, ...]]] = []

        def visit(items: list[Item], parents: tuple[Item, ...]) -> None:
            for item in items:
                out.append((item, parents))
                visit(item.children, (*parents, item))

        visit(self.items, ())
        return out


def _q(ns: str, tag: str) -> str:
    return f"{{{ns}}}{tag}"


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False, no_network=True, huge_tree=True, remove_comments=True
    )


def _bool(text: str | None, default: bool) -> bool:
    if text is None:
        return default
    return text.strip() in ("true", "1")


def _float(text: str | None, where: str) -> float:
    if text is None:
        return 1.0
    try:
        value = float(text)
    except ValueError:
        raise ContentError(f"{where}: weight {text!r} is not a number") from None
    if not value >= 0.0:  # negative and NaN weights are invalid XCCDF
        raise ContentError(f"{where}: weight {text!r} is not a non-negative number")
    return value


def _text(el: etree._Element | None) -> str:
    return "".join(el.itertext()).strip() if el is not None else ""


def _check(el: etree._Element) -> Check:
    refs = tuple(
        (r.get("href", ""), r.get("name", "")) for r in el.iterfind(_q(XCCDF, "check-content-ref"))
    )
    exports = tuple(
        (e.get("value-id", ""), e.get("export-name", ""))
        for e in el.iterfind(_q(XCCDF, "check-export"))
    )
    return Check(
        system=el.get("system", ""),
        negate=_bool(el.get("negate"), False),
        multi_check=_bool(el.get("multi-check"), False),
        selector=el.get("selector", ""),
        refs=refs,
        exports=exports,
    )


MAX_DEPTH = 64  # groups within groups (SSG: 6); deeper is hostile, not content


def _item(el: etree._Element, depth: int = 0) -> Item:
    kind = "rule" if el.tag == _q(XCCDF, "Rule") else "group"
    item_id = el.get("id")
    if not item_id:
        raise ContentError(f"an XCCDF {kind} without an id (line {el.sourceline})")
    if depth > MAX_DEPTH:
        raise ContentError(f"groups nested deeper than {MAX_DEPTH} (line {el.sourceline})")
    checks: list[Check] = []
    children: list[Item] = []
    for child in el:
        if child.tag == _q(XCCDF, "check"):
            checks.append(_check(child))
        elif child.tag == _q(XCCDF, "complex-check"):
            checks.append(Check(system="", complex=True))
        elif child.tag in (_q(XCCDF, "Rule"), _q(XCCDF, "Group")):
            children.append(_item(child, depth + 1))
    return Item(
        id=item_id,
        kind=kind,
        title=_text(el.find(_q(XCCDF, "title"))),
        selected=_bool(el.get("selected"), True),
        weight=_float(el.get("weight"), item_id),
        role=el.get("role", "full"),
        severity=el.get("severity", "unknown"),
        platforms=tuple(p.get("idref", "") for p in el.iterfind(_q(XCCDF, "platform"))),
        cluster_id=el.get("cluster-id", ""),
        checks=tuple(checks),
        children=children,
    )


def _values(bench: etree._Element) -> dict[str, Value]:
    out: dict[str, Value] = {}
    for el in bench.iter(_q(XCCDF, "Value")):
        values = {v.get("selector", ""): (v.text or "") for v in el.iterfind(_q(XCCDF, "value"))}
        out[el.get("id", "")] = Value(
            id=el.get("id", ""),
            type=el.get("type", "string"),
            values=values,
            cluster_id=el.get("cluster-id", ""),
        )
    return out


def _profile(el: etree._Element) -> Profile:
    prof = Profile(
        id=el.get("id", ""),
        title=_text(el.find(_q(XCCDF, "title"))),
        extends=el.get("extends", ""),
    )
    for child in el:
        idref = child.get("idref", "")
        if child.tag == _q(XCCDF, "select"):
            prof.selects.append((idref, _bool(child.get("selected"), True)))
        elif child.tag == _q(XCCDF, "refine-value"):
            prof.refine_values.append((idref, child.get("selector", "")))
        elif child.tag == _q(XCCDF, "set-value"):
            prof.set_values.append((idref, child.text or ""))
        elif child.tag == _q(XCCDF, "refine-rule"):
            attrs = {k: v for k, v in child.attrib.items() if k != "idref"}
            prof.refine_rules.append((idref, attrs))
    return prof


def _logical_test(el: etree._Element, catalog: dict[str, str], depth: int = 0) -> LogicalTest:
    if depth > MAX_DEPTH:
        raise ContentError(f"CPE logical tests nested deeper than {MAX_DEPTH}")
    names = tuple(f.get("name", "") for f in el.iterfind(_q(CPE_LANG, "fact-ref")))
    checks = tuple(
        (catalog.get(c.get("href", ""), c.get("href", "")), c.get("id-ref", ""))
        for c in el.iterfind(_q(CPE_LANG, "check-fact-ref"))
    )
    tests = tuple(
        _logical_test(t, catalog, depth + 1) for t in el.iterfind(_q(CPE_LANG, "logical-test"))
    )
    return LogicalTest(
        operator=el.get("operator", "AND").upper(),
        negate=_bool(el.get("negate"), False),
        names=names,
        checks=checks,
        tests=tests,
    )


def _catalog(ref: etree._Element) -> dict[str, str]:
    """A component-ref's catalog: href name -> referenced component-ref id."""
    return {
        u.get("name", ""): u.get("uri", "").lstrip("#")
        for u in ref.iter(_q(CAT, "uri"))
        if u.get("name")
    }


def load(path: Path, datastream_id: str | None = None) -> Benchmark:
    """Read a source datastream (``ssg-*-ds.xml``); ``ContentError`` when it is not one."""
    try:
        root = etree.parse(str(path), _parser()).getroot()
    except OSError as exc:
        raise ContentError(f"cannot read {path}: {exc}") from None
    except etree.XMLSyntaxError as exc:
        raise ContentError(f"{path} is not well-formed XML: {exc}") from None
    if root.tag != _q(DS, "data-stream-collection"):
        raise ContentError(f"{path} is not an SCAP 1.2/1.3 source datastream (root {root.tag})")
    streams = list(root.iterfind(_q(DS, "data-stream")))
    if datastream_id:
        streams = [s for s in streams if s.get("id") == datastream_id]
    if not streams:
        raise ContentError(f"{path}: no data-stream {datastream_id or ''}".rstrip())
    stream = streams[0]
    components = {c.get("id", ""): c for c in root.iterfind(_q(DS, "component"))}
    refs = {r.get("id", ""): r for r in stream.iter(_q(DS, "component-ref"))}

    def component(ref_id: str) -> etree._Element:
        ref = refs.get(ref_id)
        comp = (
            components.get((ref.get(_q(XLINK, "href")) or "").lstrip("#"))
            if ref is not None
            else None
        )
        if comp is None or len(comp) == 0:
            raise ContentError(f"{path}: component-ref {ref_id!r} names no component")
        return comp[0]

    checklist = stream.find(f"{_q(DS, 'checklists')}/{_q(DS, 'component-ref')}")
    if checklist is None:
        raise ContentError(f"{path}: the datastream has no XCCDF checklist")
    bench = component(checklist.get("id", ""))
    if bench.tag != _q(XCCDF, "Benchmark"):
        raise ContentError(f"{path}: the checklist is not an XCCDF 1.2 Benchmark")
    oval: dict[str, etree._Element] = {}
    for name, ref_id in _catalog(checklist).items():
        comp = component(ref_id)
        if comp.tag == _q(OVAL_DEFS, "oval_definitions"):
            oval[name] = comp
    cpe_names: dict[str, tuple[str, str]] = {}
    for dict_ref in stream.iterfind(f"{_q(DS, 'dictionaries')}/{_q(DS, 'component-ref')}"):
        catalog = _catalog(dict_ref)
        for name, ref_id in catalog.items():
            comp = component(ref_id)
            if comp.tag == _q(OVAL_DEFS, "oval_definitions"):
                oval[name] = comp
        for cpe in component(dict_ref.get("id", "")).iter(_q(CPE_DICT, "cpe-item")):
            for chk in cpe.iterfind(_q(CPE_DICT, "check")):
                if chk.get("system") == OVAL_SYSTEM and chk.get("href"):
                    cpe_names[cpe.get("name", "")] = (chk.get("href", ""), _text(chk))
    cpe_platforms = {
        "#" + p.get("id", ""): LogicalTest(
            operator="AND",
            tests=tuple(_logical_test(t, {}) for t in p.iterfind(_q(CPE_LANG, "logical-test"))),
        )
        for p in bench.iter(_q(CPE_LANG, "platform"))
    }
    items = [_item(el) for el in bench if el.tag in (_q(XCCDF, "Rule"), _q(XCCDF, "Group"))]
    profiles = {p.id: p for p in (_profile(el) for el in bench.iterfind(_q(XCCDF, "Profile")))}
    return Benchmark(
        id=bench.get("id", ""),
        title=_text(bench.find(_q(XCCDF, "title"))),
        version=_text(bench.find(_q(XCCDF, "version"))),
        platforms=tuple(p.get("idref", "") for p in bench.iterfind(_q(XCCDF, "platform"))),
        items=items,
        values=_values(bench),
        profiles=profiles,
        cpe_platforms=cpe_platforms,
        cpe_names=cpe_names,
        oval=oval,
    )

"""An ARF 1.1 result datastream of a benchmark evaluation (``vmwarden benchmark --format arf``).

ARF (Asset Reporting Format) is what SCAP tools exchange results in -- what ``oscap xccdf
eval --results-arf`` writes and what SCAP dashboards import. It holds the source datastream
that was evaluated (the report request), the asset (the disk image), and the XCCDF
``TestResult`` with one ``rule-result`` per rule and the score. OVAL system characteristics
are not included: vmwarden's evaluator reports results, not collected items; the rule
results name their OVAL definitions, as OpenSCAP's do.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from lxml import etree

from vmwarden.scap.xccdf import BenchmarkResult
from vmwarden.scap.xccdf_content import DS, OVAL_SYSTEM, XCCDF, Benchmark, ContentError

ARF = "http://scap.nist.gov/schema/asset-reporting-format/1.1"
CORE = "http://scap.nist.gov/schema/reporting-core/1.1"
AI = "http://scap.nist.gov/schema/asset-identification/1.1"
VOCAB = "http://scap.nist.gov/specifications/arf/vocabulary/relationships/1.0#"
NSMAP = {"arf": ARF, "core": CORE, "ai": AI}


def _sub(
    parent: etree._Element, ns: str, tag: str, text: str | None = None, **attrs: str
) -> etree._Element:
    el = etree.SubElement(parent, f"{{{ns}}}{tag}", attrs)
    if text is not None:
        el.text = text
    return el


def _datastream(path: Path) -> tuple[etree._Element, str]:
    """The source datastream collection and the id of its XCCDF component."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True)
    try:
        root = etree.parse(str(path), parser).getroot()
    except (OSError, etree.XMLSyntaxError) as exc:
        raise ContentError(f"cannot read {path}: {exc}") from None
    for comp in root.iterfind(f"{{{DS}}}component"):
        if len(comp) and comp[0].tag == f"{{{XCCDF}}}Benchmark":
            return root, comp.get("id", "")
    raise ContentError(f"{path}: no XCCDF benchmark component")


def to_arf(
    result: BenchmarkResult,
    bench: Benchmark,
    *,
    datastream: Path,
    image: Path,
    started: datetime,
    finished: datetime | None = None,
) -> bytes:
    """The ARF document (UTF-8 XML) of ``result``, the evaluation of ``image``."""
    collection, xccdf_component = _datastream(datastream)
    finished = finished or datetime.now(UTC)
    root = etree.Element(f"{{{ARF}}}asset-report-collection", nsmap=NSMAP)
    rels = etree.SubElement(root, f"{{{CORE}}}relationships", nsmap={"arfvocab": VOCAB})
    for kind, ref in (("createdFor", "collection1"), ("isAbout", "asset0")):
        rel = _sub(rels, CORE, "relationship", type=f"arfvocab:{kind}", subject="xccdf1")
        _sub(rel, CORE, "ref", ref)
    request = _sub(_sub(root, ARF, "report-requests"), ARF, "report-request", id="collection1")
    _sub(request, ARF, "content").append(collection)
    asset = _sub(_sub(root, ARF, "assets"), ARF, "asset", id="asset0")
    device = _sub(asset, AI, "computing-device")
    _sub(device, AI, "hostname", image.name)
    report = _sub(_sub(root, ARF, "reports"), ARF, "report", id="xccdf1")
    content = _sub(report, ARF, "content")
    profile = result.profile_id or "default"
    test = etree.SubElement(
        content,
        f"{{{XCCDF}}}TestResult",
        {
            "id": f"xccdf_dev.vmwarden_testresult_{profile.rsplit('_profile_', 1)[-1]}",
            "start-time": started.isoformat(timespec="seconds"),
            "end-time": finished.isoformat(timespec="seconds"),
            "version": bench.version or "0",
            "test-system": "cpe:/a:vmwarden:vmwarden",
        },
        nsmap={None: XCCDF},
    )
    _sub(test, XCCDF, "benchmark", href=f"#{xccdf_component}", id=result.benchmark_id)
    _sub(test, XCCDF, "title", "vmwarden offline benchmark result")
    if result.profile_id:
        _sub(test, XCCDF, "profile", idref=result.profile_id)
    _sub(test, XCCDF, "target", str(image))
    facts = _sub(test, XCCDF, "target-facts")
    _sub(facts, XCCDF, "fact", "vmwarden", name="urn:xccdf:fact:scanner:name", type="string")
    _sub(facts, XCCDF, "fact", str(image), name="urn:xccdf:fact:asset:identifier:host_name",
         type="string")  # fmt: skip
    _sub(test, XCCDF, "target-id-ref", system=AI, name="asset0", href="")
    checks = {i.id: i.checks for i, _ in bench.walk() if i.kind == "rule"}
    when = finished.isoformat(timespec="seconds")
    for rule in result.rules:
        rr = _sub(test, XCCDF, "rule-result", idref=rule.rule_id, role=rule.role, time=when,
                  severity=rule.severity, weight=f"{rule.weight:f}")  # fmt: skip
        _sub(rr, XCCDF, "result", rule.result)
        oval = [c for c in checks.get(rule.rule_id, ()) if c.system == OVAL_SYSTEM and c.refs]
        if oval:
            check = _sub(rr, XCCDF, "check", system=OVAL_SYSTEM)
            href, name = oval[0].refs[0]
            _sub(check, XCCDF, "check-content-ref", name=name, href=href)
    _sub(test, XCCDF, "score", f"{result.score:f}", system="urn:xccdf:scoring:default",
         maximum="100.000000")  # fmt: skip
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")

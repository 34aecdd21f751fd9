"""Parsing an OVAL definitions document into id-indexed elements.

The document is kept as lxml elements (no object model per OVAL type: the evaluator reads the
few attributes each test type needs). Parsing refuses entities and network access, since a
datastream handed to ``vmwarden benchmark`` is the user's file, not necessarily the package's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lxml import etree

OVAL_DEF = "http://oval.mitre.org/XMLSchema/oval-definitions-5"
XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"


class OvalError(Exception):
    """The document is not OVAL definitions content this evaluator can read."""


def local(tag: Any) -> str:
    """An element's tag without its namespace (``textfilecontent54_test``)."""
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def ns(tag: Any) -> str:
    """The namespace's last path part: ``independent``, ``unix``, ``linux``…"""
    return tag[1:].split("}", 1)[0].rsplit("#", 1)[-1].rsplit("/", 1)[-1] if tag[:1] == "{" else ""


def is_nil(el: Any) -> bool:
    return el.get(XSI_NIL) in ("true", "1")


@dataclass
class OvalDocument:
    """Definitions, tests, objects, states and variables of one document, by id."""

    definitions: dict[str, Any] = field(default_factory=dict)
    tests: dict[str, Any] = field(default_factory=dict)
    objects: dict[str, Any] = field(default_factory=dict)
    states: dict[str, Any] = field(default_factory=dict)
    variables: dict[str, Any] = field(default_factory=dict)
    #: constant variables' values, read once per document (SSG's lists run to thousands)
    constants: dict[str, list[str]] = field(default_factory=dict)

    def constant_values(self, var_id: str, el: Any) -> list[str]:
        """A constant_variable's values (a copy: the document is shared by evaluations)."""
        if var_id not in self.constants:
            self.constants[var_id] = [(v.text or "") for v in el if local(v.tag) == "value"]
        return list(self.constants[var_id])

    def title(self, def_id: str) -> str:
        el = self.definitions.get(def_id)
        if el is None:
            return ""
        t = el.find(f"{{{OVAL_DEF}}}metadata/{{{OVAL_DEF}}}title")
        return (t.text or "").strip() if t is not None else ""

    def definition_class(self, def_id: str) -> str:
        el = self.definitions.get(def_id)
        return "" if el is None else el.get("class", "")


_SECTIONS = {
    "definitions": "definitions",
    "tests": "tests",
    "objects": "objects",
    "states": "states",
    "variables": "variables",
}


def parse_oval(source: str | Path | Any) -> OvalDocument:
    """An :class:`OvalDocument` from a path or an ``oval_definitions`` element."""
    if isinstance(source, (str, Path)):
        parser = etree.XMLParser(
            resolve_entities=False, no_network=True, remove_comments=True, huge_tree=True
        )
        try:
            root = etree.parse(str(source), parser).getroot()
        except OSError as exc:
            raise OvalError(f"{source}: cannot read: {exc}") from None
        except etree.XMLSyntaxError as exc:
            raise OvalError(f"{source}: not XML: {exc}") from None
    else:
        root = source
    if local(root.tag) != "oval_definitions":
        found = root.find(f".//{{{OVAL_DEF}}}oval_definitions")
        if found is None:
            raise OvalError(f"no oval_definitions element (root is {local(root.tag)!r})")
        root = found
    doc = OvalDocument()
    for section in root:
        attr = _SECTIONS.get(local(section.tag))
        if attr is None:
            continue
        table = getattr(doc, attr)
        for el in section:
            if not isinstance(el.tag, str):
                continue
            ident = el.get("id")
            if ident:
                table[ident] = el
    if not doc.definitions:
        raise OvalError("the document has no definitions")
    return doc

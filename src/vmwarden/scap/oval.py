"""The OVAL evaluator's public API: load a definitions document, evaluate it over a guest.

This is the seam the XCCDF layer builds on::

    doc = load_oval("/usr/share/xml/scap/ssg/content/ssg-debian11-oval.xml")
    results = evaluate(doc, files, definition_ids=["oval:ssg-...:def:1"],
                       external_vars={"oval:ssg-var_x:var:1": ["22"]})
    results["oval:ssg-...:def:1"].result  # "true" | "false" | "unknown" | "error"
                                          # | "not evaluated" | "not applicable"

``files`` is any :class:`~vmwarden.inspect.guest.files.GuestFiles` (dissect inside the worker,
:class:`~vmwarden.scap.oval_localfs.LocalRootFiles` over a mounted or extracted root). Nothing
is ever executed or asked of a running system: values that only exist at run time (a process's
environment, the running kernel) make their tests "not evaluated", never true or false.
Settings read from configuration (sysctl.d, unit files, fstab) are the *configured* values.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from vmwarden.inspect.guest.files import GuestFiles
from vmwarden.scap.oval_doc import OvalDocument, OvalError, parse_oval
from vmwarden.scap.oval_eval import DefinitionResult, Evaluator

__all__ = [
    "RESULTS",
    "DefinitionResult",
    "OvalDocument",
    "OvalError",
    "evaluate",
    "load_oval",
]

#: Every value :attr:`DefinitionResult.result` takes (OVAL 5.11 result enumeration).
RESULTS = ("true", "false", "unknown", "error", "not evaluated", "not applicable")


def load_oval(source: str | Path | Any) -> OvalDocument:
    """An OVAL definitions document from a file path or an already parsed
    ``oval_definitions`` element (as found inside an SCAP datastream component)."""
    return parse_oval(source)


def evaluate(
    doc: OvalDocument,
    files: GuestFiles,
    *,
    definition_ids: Iterable[str] | None = None,
    external_vars: Mapping[str, list[str]] | None = None,
) -> dict[str, DefinitionResult]:
    """Each asked definition's result (all of the document's when ``definition_ids`` is None).

    ``external_vars`` gives the values of external variables (XCCDF refine-value/export);
    a test needing one that is not given is "error" with the variable named in its reason.
    Objects and file reads are shared between definitions within one call.
    """
    ev = Evaluator(doc, files, external_vars or {})
    ids = list(doc.definitions) if definition_ids is None else list(definition_ids)
    return {i: ev.definition(i) for i in ids}

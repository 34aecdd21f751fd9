"""OVAL evaluation inside the sandboxed inspection worker, on a disk image read by dissect.

The parent sends the OVAL document's bytes with the request (the confined worker opens no host
file) and the external variable values; the worker evaluates over the guest's filesystem, no
mount, and answers per definition ``[result, reason]``. Parsed documents are kept by digest in
the warm worker, so a fleet judged against one benchmark parses it once per worker.

The worker knows this module only by the name its pool was given (``handlers={"oval":
"vmwarden.scap.oval_worker"}``): ``inspect`` does not import ``scap``.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from lxml import etree

from vmwarden.errors import InspectError
from vmwarden.inspect.disk import open_guest
from vmwarden.inspect.guest.files import GuestFiles
from vmwarden.inspect.served import ServedSource
from vmwarden.scap.oval_doc import OvalDocument, OvalError, parse_oval
from vmwarden.scap.oval_eval import Evaluator

KIND = "oval"
HANDLERS = {KIND: __name__}
_DOCS: dict[str, OvalDocument] = {}
_MAX_DOCS = 4


def _document(xml: bytes) -> OvalDocument:
    digest = hashlib.sha256(xml).hexdigest()
    doc = _DOCS.get(digest)
    if doc is None:
        parser = etree.XMLParser(
            resolve_entities=False, no_network=True, remove_comments=True, huge_tree=True
        )
        try:
            root = etree.fromstring(xml, parser)
        except etree.XMLSyntaxError as exc:
            raise OvalError(f"not XML: {exc}") from None
        doc = parse_oval(root)
        if len(_DOCS) >= _MAX_DOCS:
            _DOCS.pop(next(iter(_DOCS)))
        _DOCS[digest] = doc
    return doc


def request_payload(
    oval_xml: bytes,
    *,
    definition_ids: list[str] | None = None,
    external_vars: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    """What the parent adds to a worker request (``InspectorPool.run(path, KIND, payload)``)."""
    return {
        "oval": oval_xml.decode("utf-8", "replace"),
        "definition_ids": definition_ids,
        "external_vars": external_vars or {},
    }


def handle(
    request: dict[str, Any], layers: list[tuple[int | ServedSource, str]], image: str
) -> dict[str, Any]:
    """The worker's answer to an ``oval`` request (called by the worker, confined)."""
    started = time.monotonic()
    try:
        doc = _document(str(request.get("oval", "")).encode())
    except OvalError as exc:
        return {"ok": False, "error": f"OVAL content: {exc}"}
    ids = request.get("definition_ids")
    external = {
        str(k): [str(v) for v in vs] for k, vs in (request.get("external_vars") or {}).items()
    }
    guest = open_guest(layers, name=image)
    try:
        if guest.target is None:
            raise InspectError("encrypted volume (LUKS); guest contents not read")
        ev = Evaluator(doc, GuestFiles(guest.target.fs, by_listing=True), external)
        wanted = list(doc.definitions) if ids is None else [str(i) for i in ids]
        results = {i: [r.result, r.reason] for i in wanted for r in [ev.definition(i)]}
    finally:
        stats = {
            "bytes_read": guest.bytes_read,
            "image_bytes": guest.image_size,
            "virtual_bytes": guest.virtual_size,
            "seconds": round(time.monotonic() - started, 4),
        }
    return {"ok": True, "results": results, "stats": stats}

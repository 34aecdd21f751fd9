"""vmwarden metadata from vCenter tags, through the vSphere Automation REST API.

Tags are not in the SOAP API that pyvmomi speaks: they live behind ``/rest/com/vmware/cis``.
A tag category named ``vmwarden.owner`` (``.classification``, ``.template``,
``.registered``) holds one tag per value (tag ``alice`` in category ``vmwarden.owner``);
attaching it to a VM gives the VM that value. The calls per sweep are constant in the number
of VMs: one session, the category list, each ``vmwarden.*`` category and its tags, and one
``list-attached-objects-on-tags`` for all of them.

A REST API that cannot be reached (an ESXi host, a proxy that only passes ``/sdk``, an old
vCenter) is a warning, not a failed sweep: custom attributes still give the metadata. Two
different tags of one category on one VM make that key unknown (never one picked at random).
The password goes only into the session request's Authorization header.
"""

from __future__ import annotations

import base64
import contextlib
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from vmwarden.connectors.vsphere.uri import VsphereTarget

PREFIX = "vmwarden."
KEYS = ("owner", "classification", "template", "registered")
_BASE = "/rest/com/vmware/cis"
_SESSION_HEADER = "vmware-api-session-id"


@dataclass
class Tagged:
    """VM moId → {key (``owner`` …) → value}; ``warning`` when tags could not be read."""

    by_vm: dict[str, dict[str, str]] = field(default_factory=dict)
    warning: str | None = None


class _RestError(Exception):
    pass


class _Rest:
    def __init__(self, target: VsphereTarget, timeout: float) -> None:
        self.root = f"https://{target.host}:{target.port}{_BASE}"
        if target.insecure:
            self.context = ssl.create_default_context()
            self.context.check_hostname = False
            self.context.verify_mode = ssl.CERT_NONE
        else:
            self.context = ssl.create_default_context()
        self.timeout = timeout
        self.session: str | None = None

    def call(self, method: str, path: str, body: Any = None, *, auth: str | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.root + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if auth is not None:
            req.add_header("Authorization", auth)
        if self.session is not None:
            req.add_header(_SESSION_HEADER, self.session)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=self.context) as r:
                raw = r.read(16 * 1024 * 1024)
        except urllib.error.HTTPError as exc:
            raise _RestError(f"HTTP {exc.code} from {path}") from None
        except (OSError, ValueError) as exc:
            raise _RestError(f"{path}: {getattr(exc, 'reason', None) or exc}") from None
        if not raw:
            return None
        try:
            return json.loads(raw).get("value")
        except (ValueError, AttributeError):
            raise _RestError(f"{path}: not a vAPI JSON answer") from None


def read_tags(target: VsphereTarget, *, timeout: float = 30.0) -> Tagged:
    """Every VM's ``vmwarden.*`` tag values; never raises (a failure is the warning)."""
    rest = _Rest(target, timeout)
    basic = base64.b64encode(f"{target.user}:{target.password}".encode()).decode()
    try:
        rest.session = str(rest.call("POST", "/session", auth=f"Basic {basic}"))
    except _RestError as exc:
        return Tagged(warning=f"vCenter tags not read ({exc}); custom attributes only")
    try:
        return Tagged(by_vm=_collect(rest))
    except _RestError as exc:
        return Tagged(warning=f"vCenter tags not read ({exc}); custom attributes only")
    finally:
        with contextlib.suppress(_RestError):  # the session expires on its own
            rest.call("DELETE", "/session")


def _id(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def _collect(rest: _Rest) -> dict[str, dict[str, str]]:
    tag_key: dict[str, tuple[str, str]] = {}  # tag id → (key, value)
    for cat_id in rest.call("GET", "/tagging/category") or []:
        cat = rest.call("GET", f"/tagging/category/id:{_id(cat_id)}") or {}
        name = str(cat.get("name", ""))
        key = name[len(PREFIX) :] if name.startswith(PREFIX) else ""
        if key not in KEYS:
            continue
        path = f"/tagging/tag/id:{_id(cat_id)}?~action=list-tags-for-category"
        for tag_id in rest.call("POST", path) or []:
            tag = rest.call("GET", f"/tagging/tag/id:{_id(tag_id)}") or {}
            tag_key[str(tag_id)] = (key, str(tag.get("name", "")).strip())
    if not tag_key:
        return {}
    attached = rest.call(
        "POST",
        "/tagging/tag-association?~action=list-attached-objects-on-tags",
        {"tag_ids": sorted(tag_key)},
    )
    values: dict[str, dict[str, set[str]]] = {}
    for entry in attached or []:
        key, value = tag_key.get(str(entry.get("tag_id")), ("", ""))
        if not key:
            continue
        for obj in entry.get("object_ids") or []:
            if obj.get("type") == "VirtualMachine" and obj.get("id"):
                values.setdefault(str(obj["id"]), {}).setdefault(key, set()).add(value)
    return {
        moid: {k: next(iter(v)) for k, v in keys.items() if len(v) == 1}
        for moid, keys in values.items()
    }

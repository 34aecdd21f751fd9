"""Content lineage in a sweep: which approved template each full clone's content comes from.

Why: the chain-root digest (``engine.lineage``) recognises linked clones only; a full clone's
root is the clone itself. For every local disk whose root digest is not approved, the sweep
compares the disk's guest-visible content with the signature each ``template approve``
recorded (``inspect.lineage_sig``) and hands policy the closest template and its similarity
(``Estate.content_lineage``); ``not-approved-template`` applies its threshold.

Cost is bounded: comparing reads the template's sampled blocks of the disk (about 1% of the
template's size) and is done once per disk state: the result is kept in the store's digest
cache under ``lineage:<template digest>:<disk path>``, valid while the disk file's (device,
inode, size, mtime) are unchanged and the chain's layers and the signature are the same
(a key folded into the cached value). Disks of another host are not read here (their paths
are not files on this machine); remote reads will come through a ranged reader
(``inspect.virtual.layer_from``).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vmwarden.engine.lineage import LINEAGE_DEVICES, Lineage
from vmwarden.errors import InspectError
from vmwarden.inspect.lineage_sig import Signature, Similarity, similarity
from vmwarden.model import VM, Disk
from vmwarden.model.lineage import ContentMatch

FINGERPRINT_KEY = "lineage"  # where ``template approve`` keeps the signature
_PREFIX = "lineage:"
_VALUE = "cl1"
PENDING = "content lineage not compared yet (the next sweep compares it)"


@dataclass(frozen=True, slots=True)
class Template:
    name: str
    digest: str
    signature: Signature
    key: str  # changes whenever the signature does (a re-approval re-samples)


def _signature_key(sig: Signature) -> str:
    text = json.dumps(sig.to_json(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def signed_templates(rows: Iterable[dict[str, Any]]) -> list[Template]:
    """The catalog rows (``store.templates()``) that carry a usable content signature."""
    out: list[Template] = []
    for row in rows:
        fp = row.get("fingerprint") or {}
        sig = Signature.from_json(fp.get(FINGERPRINT_KEY)) if isinstance(fp, dict) else None
        if sig is not None and sig.deciding and row.get("digest"):
            out.append(Template(row["name"], str(row["digest"]).lower(), sig, _signature_key(sig)))
    return out


def content_lineage(
    vms: Iterable[VM],
    store: Any,
    catalog: dict[str, str],
    lineage: Lineage,
    *,
    compute: bool = True,
) -> dict[str, ContentMatch]:
    """Disk source path → closest signed template, for local disks not approved by digest.

    ``compute=False`` (the admission hook): only results already cached; a disk not compared
    yet is ``pending`` (policy: unknown), and the next sweep compares it."""
    templates = signed_templates(store.templates())
    if not templates:
        return {}
    allowed = [str(d) for d in lineage.all_allowed_dirs()]
    out: dict[str, ContentMatch] = {}
    todo: dict[str, tuple[Disk, os.stat_result, str]] = {}
    for vm in vms:
        if not lineage.readable_vm(vm.uri):
            continue
        for disk in vm.disks:
            path = _candidate(disk, catalog)
            if path is None or path in out or path in todo:
                continue
            try:
                todo[path] = (disk, os.stat(path), _chain_key(disk))
            except OSError as exc:
                out[path] = ContentMatch(None, None, error=f"cannot stat {path}: {exc.strerror}")
    # one batched cache query for every (disk, template), not one per pair
    hits = store.cached_digests(
        [(_cache_path(t, path), st) for path, (_, st, _) in todo.items() for t in templates]
    )
    fresh: list[tuple[str, os.stat_result, str]] = []  # written in one transaction
    for path, (disk, st, chain_key) in todo.items():
        cached = {}
        for tpl in templates:
            sim = _parse(hits.get(_cache_path(tpl, path)), tpl, chain_key)
            if sim is not None:
                cached[tpl.name] = sim
        out[path] = _compare(templates, disk, path, st, chain_key, cached, allowed, compute, fresh)
    if fresh:
        store.remember_digests(fresh)
    return out


def _candidate(disk: Disk, catalog: dict[str, str]) -> str | None:
    """The disk's source path when its content should be compared, else None."""
    if disk.device not in LINEAGE_DEVICES or not disk.chain:
        return None
    root, top = disk.chain[-1], disk.chain[0]
    if root.digest is None or root.digest.lower() in catalog:
        return None
    if any(layer.error for layer in disk.chain) or top.type != "file" or not top.path:
        return None
    return top.path


def _compare(
    templates: list[Template],
    disk: Disk,
    path: str,
    st: os.stat_result,
    chain_key: str,
    scores: dict[str, Similarity],
    allowed: list[str],
    compute: bool,
    fresh: list[tuple[str, os.stat_result, str]],
) -> ContentMatch:
    """The closest template from ``scores`` (cached) and the comparisons still missing,
    which are made now (unless ``compute`` is off) and added to ``fresh`` for the cache."""
    missing = {t.name: t for t in templates if t.name not in scores}
    if missing and not compute:
        return ContentMatch(None, None, error=PENDING, pending=True)
    if missing:
        try:
            made = similarity(
                {name: t.signature for name, t in missing.items()},
                path,
                allowed_dirs=allowed,
                fmt=disk.chain[0].format,
            )
        except InspectError as exc:
            return ContentMatch(None, None, error=str(exc))
        unchanged = _unchanged(path, st)
        for name, sim in made.items():
            scores[name] = sim
            if unchanged:
                fresh.append(
                    (_cache_path(missing[name], path), st, _value(missing[name], chain_key, sim))
                )
    best = max(scores, key=lambda n: (scores[n].score, n))
    return ContentMatch(best, scores[best].score, scores[best].sampled)


def _chain_key(disk: Disk) -> str:
    """The identity of every layer below the top (the top's own is the cache row's)."""
    parts = []
    for layer in disk.chain[1:]:
        st = os.stat(layer.path or "")
        parts.append(f"{layer.path}:{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}")
    return "|".join(parts)


def _cache_path(tpl: Template, path: str) -> str:
    return f"{_PREFIX}{tpl.digest}:{path}"


def _value_key(tpl: Template, chain_key: str) -> str:
    return hashlib.sha256(f"{tpl.key}\n{chain_key}".encode()).hexdigest()[:16]


def _parse(value: str | None, tpl: Template, chain_key: str) -> Similarity | None:
    """A cached comparison, if it was made against this signature and these layers."""
    if not value:
        return None
    try:
        tag, key, matched, sampled = value.split(":")
        if tag != _VALUE or key != _value_key(tpl, chain_key):
            return None
        return Similarity(int(matched), int(sampled), 0)
    except ValueError:
        return None


def _unchanged(path: str, st: os.stat_result) -> bool:
    """Whether the disk is as it was stat'ed before reading (else: written meanwhile, and
    the result is not cached)."""
    try:
        after = os.stat(path)
    except OSError:
        return False
    return (after.st_size, after.st_mtime_ns, after.st_ino) == (
        st.st_size,
        st.st_mtime_ns,
        st.st_ino,
    )


def _value(tpl: Template, chain_key: str, sim: Similarity) -> str:
    return f"{_VALUE}:{_value_key(tpl, chain_key)}:{sim.matched}:{sim.sampled}"


def sign_for_approval(
    image: str | Path, allowed_dirs: Iterable[str | Path] | None = None
) -> dict[str, Any] | None:
    """The signature ``template approve`` records in the fingerprint (None: not readable
    for content lineage, e.g. vhdx or encrypted: then only the digest identifies it).
    ``allowed_dirs``: where a backing file may be (the API's image directories); None for
    an image named by hand on the command line."""
    from vmwarden.inspect.lineage_sig import sign_image

    try:
        sig = sign_image(image, allowed_dirs=allowed_dirs)
    except InspectError:
        return None
    return sig.to_json() if sig.deciding else None

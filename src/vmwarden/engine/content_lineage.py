"""Content lineage in a sweep: which approved template each full clone's content comes from.

Why: the chain-root digest (``engine.lineage``) recognises linked clones only; a full clone's
root is the clone itself. For every disk whose root digest is not approved, the sweep
compares the disk's guest-visible content with the signature each ``template approve``
recorded (``inspect.lineage_sig``) and hands policy the closest template and its similarity
(``Estate.content_lineage``, keyed by ``model.lineage.content_key``); ``not-approved-template``
applies its threshold. A local disk is read from its files; another host's disk through the
readers the sweep opened on its libvirt connection (``engine.remote_disks``: ranged
``vol.download`` of its storage pools' volumes), never from a file of the same path here.

Cost is bounded: comparing reads the template's sampled blocks of the disk (about 1% of the
template's size) and is done once per disk state: the result is kept in the store's digest
cache under ``lineage:<template digest>:<disk key>``, valid while the disk's top file is
unchanged (local: device, inode, size, mtime; remote: size, mtime as its host reports them)
and the chain's other layers and the signature are the same (a key folded into the value).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vmwarden.engine.lineage import LINEAGE_DEVICES, Lineage
from vmwarden.engine.remote_disks import cache_stat
from vmwarden.errors import InspectError
from vmwarden.inspect.lineage_sig import Signature, Similarity, compare
from vmwarden.inspect.virtual import VirtualDisk, open_virtual, virtual_of
from vmwarden.model import VM, Disk
from vmwarden.model.lineage import ContentMatch, content_key

FINGERPRINT_KEY = "lineage"  # where ``template approve`` keeps the signature
_PREFIX = "lineage:"
_VALUE = "cl1"
PENDING = "content lineage not compared yet (the next sweep compares it)"

#: Opens a disk's guest-visible content for the time of a comparison.
Opener = Callable[[], contextlib.AbstractContextManager[VirtualDisk]]


@dataclass(frozen=True, slots=True)
class _Todo:
    """One disk to compare: how to open it, and what its cache entry is keyed by."""

    opener: Opener
    st: os.stat_result
    chain_key: str
    unchanged: Callable[[], bool]


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
    """Disk key → closest signed template, for disks not approved by their root digest.

    ``compute=False`` (the admission hook): only results already cached; a disk not compared
    yet is ``pending`` (policy: unknown), and the next sweep compares it."""
    templates = signed_templates(store.templates())
    if not templates:
        return {}
    allowed = [str(d) for d in lineage.all_allowed_dirs()]
    out: dict[str, ContentMatch] = {}
    todo: dict[str, _Todo] = {}
    for vm in vms:
        local = lineage.readable_vm(vm.uri)
        remote = None if local else getattr(lineage, "remote", None)
        if not local and remote is None:
            continue
        for disk in vm.disks:
            key = content_key(disk) if _candidate(disk, catalog) else None
            if key is None or key in out or key in todo:
                continue
            try:
                item = _local(disk, allowed) if local else _remote(disk, vm.uri, remote)
            except OSError as exc:
                out[key] = ContentMatch(None, None, error=f"cannot stat {key}: {exc.strerror}")
                continue
            if item is not None:
                todo[key] = item
    # one batched cache query for every (disk, template), not one per pair
    hits = store.cached_digests(
        [(_cache_path(t, key), item.st) for key, item in todo.items() for t in templates]
    )
    fresh: list[tuple[str, os.stat_result, str]] = []  # written in one transaction
    for key, item in todo.items():
        cached = {}
        for tpl in templates:
            sim = _parse(hits.get(_cache_path(tpl, key)), tpl, item.chain_key)
            if sim is not None:
                cached[tpl.name] = sim
        out[key] = _compare(templates, key, item, cached, compute, fresh)
    if fresh:
        store.remember_digests(fresh)
    return out


def _candidate(disk: Disk, catalog: dict[str, str]) -> bool:
    """Whether the disk's content should be compared (its root digest is known and not
    approved, and its chain was followed without error)."""
    if disk.device not in LINEAGE_DEVICES or not disk.chain:
        return False
    root, top = disk.chain[-1], disk.chain[0]
    if root.digest is None or root.digest.lower() in catalog:
        return False
    return not any(layer.error for layer in disk.chain) and bool(top.path)


def _local(disk: Disk, allowed: list[str]) -> _Todo | None:
    top = disk.chain[0]
    if top.type != "file" or not top.path:
        return None
    path, fmt = top.path, top.format
    st = os.stat(path)

    def unchanged() -> bool:
        try:
            after = os.stat(path)
        except OSError:
            return False
        return (after.st_size, after.st_mtime_ns, after.st_ino) == (
            st.st_size,
            st.st_mtime_ns,
            st.st_ino,
        )

    return _Todo(
        lambda: open_virtual(path, allowed_dirs=allowed, fmt=fmt), st, _chain_key(disk), unchanged
    )


def _remote(disk: Disk, uri: str, remote: Any) -> _Todo | None:
    """Another host's disk, through the readers its sweep opened (None: none were)."""
    chain = remote.chain_of(uri, disk.chain[0].path)
    if chain is None or chain.error or not chain.readers:
        return None
    readers, infos = list(chain.readers), list(chain.infos)

    @contextlib.contextmanager
    def opener() -> Iterator[VirtualDisk]:
        host = str(readers[0].identity().get("host", ""))
        yield virtual_of(readers, [i.format for i in infos], host)

    chain_key = "|".join(json.dumps(r.identity(), sort_keys=True) for r in readers[1:])
    top = readers[0]
    still = getattr(top, "still_unchanged", None)
    return _Todo(opener, cache_stat(top), chain_key, still if callable(still) else lambda: False)


def _compare(
    templates: list[Template],
    key: str,
    item: _Todo,
    scores: dict[str, Similarity],
    compute: bool,
    fresh: list[tuple[str, os.stat_result, str]],
) -> ContentMatch:
    """The closest template from ``scores`` (cached) and the comparisons still missing,
    which are made now (unless ``compute`` is off) and added to ``fresh`` for the cache."""
    missing = [t for t in templates if t.name not in scores]
    if missing and not compute:
        return ContentMatch(None, None, error=PENDING, pending=True)
    if missing:
        made: dict[str, Similarity] = {}
        try:
            with item.opener() as disk:
                for tpl in missing:
                    made[tpl.name] = compare(tpl.signature, disk)
        except InspectError as exc:
            return ContentMatch(None, None, error=str(exc))
        except OSError as exc:  # a remote read failed (the host, the volume went away)
            return ContentMatch(None, None, error=f"cannot read {key}: {exc}")
        unchanged = item.unchanged()
        for tpl in missing:
            scores[tpl.name] = made[tpl.name]
            if unchanged:
                value = _value(tpl, item.chain_key, made[tpl.name])
                fresh.append((_cache_path(tpl, key), item.st, value))
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


def lineage_note(signature: dict[str, Any] | None) -> str:
    """What ``template approve`` tells the operator about the signature it recorded."""
    sig = Signature.from_json(signature)
    if sig is None or not sig.deciding:
        return (
            "no content lineage signature (a format not read for it, encrypted, or too little "
            "content): only linked clones of it are recognised, by digest"
        )
    return f"content lineage: {len(sig.offsets)} blocks sampled; full clones are recognised"


def stored_matches(store: Any, record: dict[str, Any]) -> dict[str, ContentMatch]:
    """Disk target → the closest signed template a sweep found for a stored VM's disk by
    content, from the cache only (the VM page and API never read a disk): local disks whose
    file is unchanged since; another host's disks are not looked up here."""
    from vmwarden.engine.admission_records import vm_from_record

    templates = signed_templates(store.templates())
    try:
        vm = vm_from_record(record)
    except (KeyError, TypeError, ValueError):
        return {}
    catalog = {d.lower() for d in store.catalog()}
    found: dict[str, tuple[str, _Todo]] = {}
    for disk in vm.disks if templates else ():
        top = disk.chain[0] if disk.chain else None
        if top is None or top.host or not _candidate(disk, dict.fromkeys(catalog, "")):
            continue
        try:
            item = _local(disk, [])
        except OSError:
            continue
        if item is not None and top.path:
            found[disk.target] = (top.path, item)
    hits = store.cached_digests(
        [(_cache_path(t, path), item.st) for path, item in found.values() for t in templates]
    )
    out: dict[str, ContentMatch] = {}
    for target, (path, item) in found.items():
        scores = {
            t.name: sim
            for t in templates
            if (sim := _parse(hits.get(_cache_path(t, path)), t, item.chain_key)) is not None
        }
        if scores:
            best = max(scores, key=lambda n: (scores[n].score, n))
            out[target] = ContentMatch(best, scores[best].score, scores[best].sampled)
    return out

"""The worker side: one disk's chain, root digest, content lineage and guest facts, read on
the disk's own host by ``vmwarden worker``.

Why a plugin: the inspector (``inspect.sandbox.InspectorPool``, dissect in a sandboxed
subprocess) costs ~1.3 s to import dissect on its first image; the plugin keeps one pool per
worker for the worker's life, so only the first disk pays it; and it remembers each disk's
results while every layer's (path, device, inode, size, mtime) is unchanged, as the store's
facts cache does for this machine's disks, so a warm sweep costs a stat per layer. The
worker reads only under its ``--storage`` directories: a disk or backing file elsewhere is
refused with the reason (the sweep then reports that disk uninspectable), whatever a
tenant's domain definition names.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from distributed import WorkerPlugin, get_worker
from vmwarden.errors import InspectError
from vmwarden.inspect.chain import resolve_chain
from vmwarden.inspect.digest import digest_with_cache
from vmwarden.inspect.lineage_sig import Signature, compare
from vmwarden.inspect.sandbox import InspectorPool
from vmwarden.inspect.virtual import open_virtual
from vmwarden.model import GuestFacts, Layer

PLUGIN = "vmwarden-disks"
#: Inspector pools kept warm at once (one per store, i.e. per master, that uses the worker).
POOLS = 2
#: Disks whose digest, facts and similarities a worker remembers (a host's disks, with room).
CACHED = 4096
StatKey = tuple[str, int, int, int, int]


@dataclass(frozen=True, slots=True)
class DiskRequest:
    """One disk to read on its host (what the sweep sends: no secret but the facts key)."""

    host: str
    path: str
    format: str | None
    approved: frozenset[str]  # catalog digests: an approved root needs no content lineage
    signatures: tuple[tuple[str, dict[str, Any]], ...]  # (template, Signature.to_json())
    fingerprint_key: bytes  # keys password-hash fingerprints as the sweep's store does
    inspect: bool = True
    timeout: float = 60.0
    digest: bool = True  # the chain root's sha256 (a pool volume no VM uses needs none)


@dataclass
class DiskResult:
    """What one disk holds, as the sweep's own reads would have found it."""

    host: str
    path: str
    chain: list[Layer] = field(default_factory=list)
    facts: GuestFacts | None = None
    facts_error: str | None = None  # why the guest facts could not be read
    similarity: dict[str, tuple[int, int]] = field(default_factory=dict)  # template → (m, n)
    similarity_error: str | None = None
    worker: str = ""
    cached: bool = False  # facts and similarities from this worker's memory (layers unchanged)


class DiskReader(WorkerPlugin):
    """Held by each ``vmwarden worker``: its host, storage dirs and warm inspector pools."""

    name = PLUGIN

    def __init__(self, host: str, storage: list[str], slots: int = 1) -> None:
        self.host = host
        self.storage = [os.path.realpath(d) for d in storage]
        self.slots = max(1, slots)
        self._pools: dict[bytes, InspectorPool] = {}
        self._digests: OrderedDict[StatKey, str] = OrderedDict()
        self._read: OrderedDict[Any, tuple[GuestFacts | None, dict[str, tuple[int, int]]]]
        self._read = OrderedDict()
        self._lock = threading.Lock()

    def teardown(self, worker: object) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()

    def pool(self, key: bytes, timeout: float) -> InspectorPool:
        """The warm pool for the sweep's fingerprint key (one per installation in practice;
        at most :data:`POOLS` are kept, the least recently used closed)."""
        with self._lock:
            pool = self._pools.pop(key, None)
            if pool is None:
                pool = InspectorPool(
                    workers=self.slots,
                    timeout=timeout,
                    allowed_dirs=self.storage,
                    fingerprint_key=key,
                )
            self._pools[key] = pool  # the most recent last
            while len(self._pools) > POOLS:
                self._pools.pop(next(iter(self._pools))).close()
            return pool

    def refusal(self, path: str) -> str | None:
        """Why ``path`` is not read here (None: it lies under a storage dir)."""
        real = os.path.realpath(path)
        for top in self.storage:
            if real == top or real.startswith(top.rstrip(os.sep) + os.sep):
                return None
        dirs = ", ".join(self.storage) or "none"
        return (
            f"worker of {self.host} refused {path}: not under its storage directories "
            f"({dirs}); start it with --storage for that directory"
        )

    def lookup(self, path: str, st: os.stat_result) -> str | None:
        with self._lock:
            return self._digests.get(_stat_key(path, st))

    def remember(self, path: str, st: os.stat_result, digest: str) -> None:
        with self._lock:
            _bounded_put(self._digests, _stat_key(path, st), digest)

    def recall(self, key: Any) -> tuple[GuestFacts | None, dict[str, tuple[int, int]]] | None:
        """A disk's facts and similarities, read earlier from the very same layers."""
        with self._lock:
            hit = self._read.get(key)
            if hit is not None:
                self._read.move_to_end(key)
            return hit

    def keep(self, key: Any, value: tuple[GuestFacts | None, dict[str, tuple[int, int]]]) -> None:
        with self._lock:
            _bounded_put(self._read, key, value)


def _bounded_put(cache: OrderedDict[Any, Any], key: Any, value: Any) -> None:
    """Put, dropping the least recently put beyond :data:`CACHED` entries."""
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > CACHED:
        cache.popitem(last=False)


def _stat_key(path: str, st: os.stat_result) -> StatKey:
    return (path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def read_disk(request: DiskRequest) -> DiskResult:
    """The task a sweep submits per disk; runs on a worker of ``request.host``."""
    worker = get_worker()
    reader = worker.plugins[PLUGIN]
    assert isinstance(reader, DiskReader)
    return read_with(reader, request, str(worker.address))


def read_with(reader: DiskReader, request: DiskRequest, worker: str = "") -> DiskResult:
    """One disk through ``reader`` (its host, storage dirs and warm pool)."""
    result = DiskResult(request.host, request.path, worker=worker)
    if reader.host != request.host:  # a placement bug, never a wrong host's file
        result.chain = [Layer(request.path, request.format, error="sent to the wrong host")]
        return result
    refused = reader.refusal(request.path)
    if refused is not None:
        result.chain = [Layer(request.path, request.format, error=refused)]
        return result
    result.chain, layers = _chain(reader, request)
    if any(layer.error for layer in result.chain):
        return result
    key = (request.fingerprint_key, request.inspect, _request_key(request), tuple(layers))
    hit = reader.recall(key)
    if hit is not None:  # every layer unchanged since this worker read it
        result.facts, result.similarity = hit
        result.cached = True
        return result
    _content(reader, request, result)
    if request.inspect:
        try:
            result.facts = reader.pool(request.fingerprint_key, request.timeout).inspect(
                request.path, request.format
            )
        except InspectError as exc:
            result.facts_error = str(exc)
    if result.facts_error is None and result.similarity_error is None:
        reader.keep(key, (result.facts, dict(result.similarity)))
    return result


def _request_key(request: DiskRequest) -> str:
    """What besides the layers decides a result: the templates compared and approved."""
    text = json.dumps([sorted(request.approved), request.signatures], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _chain(reader: DiskReader, request: DiskRequest) -> tuple[list[Layer], list[StatKey]]:
    """The backing chain (confined to the storage dirs), mtimes, the root's digest, and
    each layer's identity (path, device, inode, size, mtime)."""
    chain = resolve_chain(request.path, fmt=request.format, allowed_dirs=reader.storage)
    layers: list[StatKey] = []
    for i, layer in enumerate(chain):
        if layer.error or not layer.path:
            continue
        try:
            st = os.stat(layer.path)
        except OSError as exc:
            layer.error = f"cannot stat {layer.path}: {exc.strerror}"
            continue
        layer.mtime = datetime.fromtimestamp(st.st_mtime, UTC)
        layers.append(_stat_key(layer.path, st))
        if i == len(chain) - 1 and request.digest:
            try:
                layer.digest = digest_with_cache(layer.path, reader.lookup, reader.remember)
            except (InspectError, OSError) as exc:
                layer.error = f"cannot hash {layer.path}: {exc}"
    return chain, layers


def _content(reader: DiskReader, request: DiskRequest, result: DiskResult) -> None:
    """Similarity to each signed template, when the root digest is not itself approved."""
    root = result.chain[-1]
    if not request.signatures or root.digest is None or root.digest.lower() in request.approved:
        return
    try:
        with open_virtual(request.path, allowed_dirs=reader.storage, fmt=request.format) as disk:
            for name, data in request.signatures:
                sig = Signature.from_json(data)
                if sig is not None:
                    sim = compare(sig, disk)
                    result.similarity[name] = (sim.matched, sim.sampled)
    except (InspectError, OSError) as exc:
        result.similarity_error = f"cannot compare {request.path}: {exc}"

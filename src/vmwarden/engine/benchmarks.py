"""SCAP benchmarks the policy asks for, evaluated on each inspected disk and kept with its facts.

The ``benchmark`` filter only reads ``GuestFacts.benchmarks``; this step fills it during the
sweep, right after inspection: every distinct (datastream, profile, ignore_platform) of the
policy's ``benchmark`` filters, on every local disk whose facts were read. A result is kept
while the disk is unchanged (it lives in the facts cache row) and the datastream's digest is
the one it was computed with, so an unchanged estate costs nothing the second time.

Disks of other hosts (read through their libvirt connection) are not benchmarked yet: they
have no results, so the filter is unknown for them, never a pass. ``watch`` does not evaluate
benchmarks either; it judges with the results the last sweep cached with the facts.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vmwarden.errors import VmwardenError
from vmwarden.model import GuestFacts
from vmwarden.policy.filters.base import Filter
from vmwarden.policy.filters.benchmark import Benchmark as BenchmarkFilter
from vmwarden.policy.filters.benchmark import benchmark_key
from vmwarden.policy.rules import Policy
from vmwarden.store.facts import FactsCache

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Spec:
    """One benchmark the policy needs: the key its results are stored under."""

    datastream: str
    profile: str | None
    ignore_platform: bool

    @property
    def key(self) -> str:
        return benchmark_key(self.datastream, self.profile, self.ignore_platform)


def specs(policy: Policy) -> list[Spec]:
    """Every distinct benchmark named by the policy's rules (inside and/or/not too)."""
    found: dict[str, Spec] = {}

    def walk(node: Filter) -> None:
        if isinstance(node, BenchmarkFilter):
            p = node.params
            spec = Spec(p.datastream, p.profile, p.ignore_platform)
            found.setdefault(spec.key, spec)
        for child in getattr(node, "children", None) or []:
            walk(child)

    for rule in policy.rules:
        walk(rule.filter)
    return list(found.values())


def _digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def run_benchmarks(
    store: object,
    guests: Iterable[GuestFacts],
    policy: Policy,
    *,
    allowed_dirs: list[Path],
    workers: int | None = None,
    timeout: float = 120.0,
) -> int:
    """Fill ``benchmarks`` of each local disk's facts for the policy's benchmarks; how many
    evaluations ran. Failures are recorded per disk (the filter is then unknown)."""
    wanted = specs(policy)
    todo = [g for g in {id(g): g for g in guests}.values() if g.identity and not g.encrypted]
    if not wanted or not todo:
        return 0
    from vmwarden.inspect.sandbox import InspectorPool
    from vmwarden.scap import oval_worker
    from vmwarden.scap.xccdf_content import ContentError, load
    from vmwarden.scap.xccdf_image import oval_documents

    cache = FactsCache(store)  # type: ignore[arg-type]
    # datastream -> (Benchmark, digest, OVAL bytes by href) | error
    loaded: dict[str, tuple[Any, str, dict[str, bytes]] | str] = {}
    for spec in wanted:
        if spec.datastream in loaded:
            continue
        try:
            bench = load(Path(spec.datastream))
            loaded[spec.datastream] = (bench, _digest(spec.datastream), oval_documents(bench))
        except (ContentError, OSError) as exc:
            loaded[spec.datastream] = str(exc)
    pool = InspectorPool(
        workers=workers,
        timeout=timeout,
        allowed_dirs=allowed_dirs,
        fingerprint_key=cache.fingerprint_key(),
        handlers=oval_worker.HANDLERS,
    )

    def one(guest: GuestFacts) -> tuple[dict[str, dict[str, Any]], int]:
        entries = dict(guest.benchmarks or {})
        ran = 0
        for spec in wanted:
            got = loaded[spec.datastream]
            if isinstance(got, str):
                entries[spec.key] = {"error": got}
                continue
            bench, digest, xml = got
            if entries.get(spec.key, {}).get("datastream_sha256") == digest:
                continue  # computed on this disk with this content already
            entries[spec.key] = _evaluate(pool, guest.image, (bench, digest, xml), spec)
            ran += 1
        return entries, ran

    changed: list[GuestFacts] = []
    total = 0
    with pool, ThreadPoolExecutor(max_workers=pool.workers) as threads:
        # disks in parallel, one worker each (the pool bounds them); the parsed benchmark is
        # only read by evaluate(), so the threads share it
        for guest, (entries, ran) in zip(todo, threads.map(one, todo), strict=True):
            total += ran
            if entries != (guest.benchmarks or {}):
                guest.benchmarks = entries
                changed.append(guest)
    cache.update_facts(changed)
    return total


def _evaluate(
    pool: Any, image: str, content: tuple[Any, str, dict[str, bytes]], spec: Spec
) -> dict[str, Any]:
    from vmwarden.scap.xccdf import resolve_profile
    from vmwarden.scap.xccdf_image import benchmark_image

    bench, digest, xml = content
    profile = resolve_profile(bench.profiles, spec.profile)
    try:
        result, extra = benchmark_image(
            image,
            bench,
            profile_id=profile,
            ignore_platform=spec.ignore_platform,
            pool=pool,
            oval_xml=xml,
        )
    except VmwardenError as exc:
        log.warning("benchmark %s on %s: %s", spec.profile, image, exc)
        return {"error": str(exc)}  # no digest: tried again next sweep (a timeout may pass)
    return {
        "benchmark": result.benchmark_id,
        "profile": result.profile_id or None,
        "datastream_sha256": digest,
        "score": result.score,
        "counts": {k: v for k, v in result.counts().items() if v},
        "failed": result.failed(),
        "platform_applicable": result.platform_applicable,
        "evaluated_at": datetime.now(UTC).isoformat(),
        "bytes_read": extra.get("stats", {}).get("bytes_read"),
    }

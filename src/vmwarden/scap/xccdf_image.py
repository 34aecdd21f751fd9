"""An XCCDF benchmark evaluated on a disk image: the XCCDF layer fed by the sandboxed worker.

The benchmark is read here, in the parent (it is the user's file, not the guest's); the
OVAL definitions the profile needs are sent to an inspection worker, which evaluates them
on the image's filesystem through dissect -- nothing is mounted, nothing from the guest
runs, and the worker is confined like every inspection (``vmwarden.scap.oval_worker``).
Two requests per image: the CPE OVAL (platform applicability) and the checks' OVAL.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lxml import etree

from vmwarden.inspect.facts import new_fingerprint_key
from vmwarden.inspect.sandbox import InspectorPool
from vmwarden.scap import oval_worker
from vmwarden.scap.xccdf import BenchmarkResult, evaluate
from vmwarden.scap.xccdf_content import Benchmark


@dataclass
class WorkerRunner:
    """An OVAL runner asking ``pool``'s workers about ``image``; keeps reasons and costs."""

    pool: InspectorPool
    image: Path
    bench: Benchmark
    reasons: dict[str, str] = field(default_factory=dict)
    stats: dict[str, float] = field(default_factory=dict)
    _xml: dict[str, bytes] = field(default_factory=dict)

    def __call__(
        self, href: str, ids: frozenset[str], variables: Mapping[str, list[str]]
    ) -> Mapping[str, str]:
        root = self.bench.oval.get(href)
        if root is None:  # a check naming a file the datastream does not hold
            self.reasons.update(dict.fromkeys(ids, f"{href} is not in the datastream"))
            return dict.fromkeys(ids, "error")
        xml = self._xml.get(href)
        if xml is None:
            xml = self._xml[href] = etree.tostring(root)
        payload = oval_worker.request_payload(
            xml, definition_ids=sorted(ids), external_vars=dict(variables)
        )
        answer = self.pool.run(self.image, oval_worker.KIND, payload)
        for key, value in (answer.get("stats") or {}).items():
            if not isinstance(value, int | float):
                continue
            if key in ("bytes_read", "seconds"):  # per request: the image's cost is the sum
                self.stats[key] = round(self.stats.get(key, 0) + value, 4)
            else:  # sizes of the image itself
                self.stats[key] = value
        out: dict[str, str] = {}
        for def_id, got in (answer.get("results") or {}).items():
            result, reason = [*list(got), "", ""][:2]
            out[str(def_id)] = str(result)
            if reason:
                self.reasons[str(def_id)] = str(reason)
        return out


def oval_documents(bench: Benchmark) -> dict[str, bytes]:
    """The datastream's OVAL components as the bytes a worker request carries, made once
    (and before any thread shares ``bench``: lxml trees are read, never serialised, there)."""
    return {href: etree.tostring(root) for href, root in bench.oval.items()}


def benchmark_image(
    image: str | os.PathLike[str],
    bench: Benchmark,
    *,
    profile_id: str | None = None,
    ignore_platform: bool = False,
    allowed_dirs: Iterable[str | os.PathLike[str]] | None = None,
    timeout: float = 120.0,
    pool: InspectorPool | None = None,
    oval_xml: Mapping[str, bytes] | None = None,
) -> tuple[BenchmarkResult, dict[str, Any]]:
    """``bench`` (under ``profile_id``) on ``image``: the result, and reasons and costs.

    ``allowed_dirs`` defaults to the image's directory (backing files elsewhere are named,
    never opened). A warm ``pool`` made with ``oval_worker.HANDLERS`` may be passed in, and
    ``oval_xml`` (:func:`oval_documents`) when many disks are judged with one benchmark.

    Raises:
        InspectError: the image cannot be opened or read by the worker.
        ContentError: the profile does not exist or the content is unusable.
    """
    path = Path(os.path.abspath(os.fspath(image)))
    dirs = list(allowed_dirs) if allowed_dirs is not None else [path.parent]
    own = pool is None
    if pool is None:
        pool = InspectorPool(
            workers=1,
            timeout=timeout,
            allowed_dirs=dirs,
            fingerprint_key=new_fingerprint_key(),
            handlers=oval_worker.HANDLERS,
        )
    runner = WorkerRunner(pool=pool, image=path, bench=bench, _xml=dict(oval_xml or {}))
    try:
        result = evaluate(bench, runner, profile_id=profile_id, ignore_platform=ignore_platform)
    finally:
        if own:
            pool.close()
    return result, {"reasons": runner.reasons, "stats": runner.stats}

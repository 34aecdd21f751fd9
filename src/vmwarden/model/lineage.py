"""Content lineage of a disk: the approved template its guest-visible content comes from.

Why a record of its own: a full clone has no backing chain and its own digest, so the
chain-root digest cannot say where it came from; the engine compares the disk's content to
the templates' signatures (``inspect.lineage_sig``) and policy reads the result from
``Estate.content_lineage`` (keyed by the disk's source path).
"""

from __future__ import annotations

from dataclasses import dataclass

from vmwarden.model.vm import Disk


@dataclass(frozen=True, slots=True)
class ContentMatch:
    """The closest approved template to a disk's content, and how close.

    ``similarity`` is the fraction of the template's sampled blocks found unchanged at the
    same offsets (0..1); ``None`` with ``error`` set when the disk could not be compared,
    or with ``pending`` when it was not compared yet (the power-on gate reads only results a
    sweep cached: its answer never waits for reading a disk).
    """

    template: str | None
    similarity: float | None
    sampled: int = 0
    error: str | None = None
    pending: bool = False


def content_key(disk: Disk) -> str | None:
    """Where ``Estate.content_lineage`` keeps a disk's match: its source path, prefixed
    with its host's name for another host's disk (two hosts may use one path)."""
    top = disk.chain[0] if disk.chain else None
    if top is None or not top.path:
        return None
    return remote_key(top.host, top.path) if top.host else top.path


def remote_key(host: str, path: str) -> str:
    """A name for another host's file in caches keyed by path: never equal to a local
    absolute path, the same whatever platform serves the file."""
    return f"remote-disk://{host}{path}"

"""A disk's backing chain read from image headers through :class:`RangedReader` s.

The same rules as :mod:`~vmwarden.inspect.chain` (headers parsed in Python; a declared
format trusted, ``raw`` never probed; loops, over-deep chains, network and ``json:``
backings stop the walk with ``error`` set), for files that are not on this machine: another
host's volumes, read through its libvirt connection. Which names may be followed is the
caller's ``open_layer``: for a remote host, only volumes of its storage pools.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from vmwarden.errors import InspectError, VmwardenError
from vmwarden.inspect.header import ImageInfo, read_image_info
from vmwarden.inspect.opener import SUPPORTED
from vmwarden.model import Layer
from vmwarden.model.ranged import RangedReader

DEFAULT_MAX_DEPTH = 16
_PROTOCOL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
OpenLayer = Callable[[str], RangedReader]


class RangedImage:
    """What :func:`~vmwarden.inspect.header.read_image_info` needs of an image (``path``,
    ``size``, ``read_at``), over a :class:`RangedReader`."""

    is_block = False

    def __init__(self, reader: RangedReader) -> None:
        self.reader = reader
        self.path = reader.path

    @property
    def size(self) -> int:
        return self.reader.size

    def read_at(self, offset: int, length: int) -> bytes:
        try:
            return self.reader.read(offset, length)
        except OSError as exc:
            raise InspectError(str(exc)) from None


@dataclass
class RangedChain:
    """The chain's layers (as :func:`~vmwarden.inspect.chain.resolve_chain` returns them)
    and, for each layer that was opened, its reader and header facts."""

    layers: list[Layer] = field(default_factory=list)
    readers: list[RangedReader] = field(default_factory=list)
    infos: list[ImageInfo] = field(default_factory=list)

    @property
    def error(self) -> str | None:
        return next((layer.error for layer in self.layers if layer.error), None)

    @property
    def encrypted(self) -> bool:
        return any(info.encrypted or info.format == "luks" for info in self.infos)

    def check_supported(self) -> None:
        """The formats dissect may read, as :func:`~vmwarden.inspect.opener.open_disk` checks.

        Raises:
            InspectError: a layer's format is not supported, or a backing of a non-qcow2.
        """
        for index, info in enumerate(self.infos):
            path = self.readers[index].path
            if info.format not in SUPPORTED:
                raise InspectError(f"image format {info.format} is not supported: {path}")
            if info.format == "vmdk" and self.readers[index].read(0, 4) == b"# Di":
                raise InspectError(
                    f"vmdk descriptor with separate extent files is not supported: {path}"
                )
            below = self.infos[index + 1].format if index + 1 < len(self.infos) else None
            # a sparse vmdk over a vmdk: a linked clone or snapshot delta on a datastore
            vmdk_delta = (info.format, below) == ("vmdk", "vmdk")
            if below is not None and info.format != "qcow2" and not vmdk_delta:
                raise InspectError(
                    f"backing files are followed only for qcow2 and vmdk deltas "
                    f"(not {info.format} over {below}): {path}"
                )


def resolve_ranged_chain(
    path: str,
    open_layer: OpenLayer,
    *,
    fmt: str | None = None,
    max_depth: int = DEFAULT_MAX_DEPTH,
    mtime: Callable[[RangedReader], datetime | None] | None = None,
) -> RangedChain:
    """The chain of the image at ``path`` (a name on the reader's host), top first.

    ``open_layer(name)`` gives a reader or raises (:class:`~vmwarden.errors.VmwardenError`
    or ``OSError``: the layer gets that reason as its error). Never raises for content.
    """
    chain = RangedChain()
    seen: set[str] = set()
    # a URI-like name (``ebs://REGION/vol-…``) is the connector's, kept as it gave it
    current = path if _PROTOCOL.match(path) else os.path.normpath(path)
    declared = fmt
    while True:
        layer = Layer(path=current, format=declared, type="file")
        chain.layers.append(layer)
        if current in seen:
            layer.error = f"backing chain loop: {current}"
            break
        seen.add(current)
        try:
            reader = open_layer(current)
            # a reader that resolved the file itself (a VMDK descriptor's flat extents) says
            # what its bytes are: that, not the file's declared format, is parsed
            declared = getattr(reader, "presented_format", None) or declared
            info = read_image_info(RangedImage(reader), declared)  # type: ignore[arg-type]
        except (VmwardenError, OSError) as exc:
            layer.error = str(exc)
            break
        chain.readers.append(reader)
        chain.infos.append(info)
        layer.format = info.format
        layer.mtime = mtime(reader) if mtime is not None else None
        if info.unfollowed_parent:
            layer.error = info.unfollowed_parent
            break
        # a reader that is a descriptor's delta extent names the parent the descriptor does
        backing = info.backing or getattr(reader, "presented_backing", None)
        if backing is None:
            break
        if len(chain.layers) >= max_depth:
            layer.error = f"backing chain deeper than {max_depth} layers"
            break
        if backing.startswith("json:") or _PROTOCOL.match(backing):
            chain.layers.append(
                Layer(
                    path=backing,
                    format=info.backing_format,
                    type="network",
                    error=f"network backing not followed: {backing}",
                )
            )
            break
        # a reader whose names are not file paths (a datastore's ``[ds] dir/x.vmdk``) says
        # where its header's parent is; else the name is relative to this layer's directory
        resolve = getattr(reader, "backing_path", None)
        if callable(resolve):
            current = str(resolve(backing))
        else:
            current = os.path.normpath(os.path.join(os.path.dirname(current), backing))
        declared = info.backing_format
    return chain


def mtime_of(reader: RangedReader) -> datetime | None:
    """A reader's mtime from its identity (``mtime_ns``), when it has one."""
    ns = reader.identity().get("mtime_ns")
    return datetime.fromtimestamp(ns / 1e9, UTC) if isinstance(ns, int) and ns > 0 else None

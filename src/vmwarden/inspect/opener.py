"""The trusted half of reading a guest disk: which files make up the disk, opened read-only.

The parent process (root, or whoever may read the images) decides *which* host files a disk
consists of, with :func:`~vmwarden.inspect.chain.resolve_chain` and its ``allowed_dirs``
rule, and opens each of them itself. The untrusted half, dissect.target parsing the guest's
bytes, then gets only these open descriptors (passed to the sandboxed worker over a Unix
socket) and never a host path it could open by name: a backing link to ``/etc/shadow`` is
refused here, before anything is opened.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from vmwarden.errors import InspectError
from vmwarden.inspect._io import open_image
from vmwarden.inspect.chain import resolve_chain
from vmwarden.inspect.header import read_image_info

#: Formats whose bytes dissect reads from a single descriptor.
SUPPORTED = ("qcow2", "raw", "vmdk", "vhdx", "luks")

_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


@dataclass(slots=True)
class OpenedLayer:
    """One file of a disk, open read-only; ``fd`` belongs to the :class:`OpenedDisk`."""

    path: str
    format: str
    fd: int
    st: os.stat_result
    encrypted: bool = False

    def identity(self) -> dict[str, Any]:
        """What the facts cache compares to decide the layer is unchanged."""
        return {
            "path": self.path,
            "dev": self.st.st_dev,
            "inode": self.st.st_ino,
            "size": self.st.st_size,
            "mtime_ns": self.st.st_mtime_ns,
        }


@dataclass(slots=True)
class OpenedDisk:
    """A disk's layers, top (the image named) first, root of the backing chain last."""

    layers: list[OpenedLayer] = field(default_factory=list)

    @property
    def encrypted(self) -> bool:
        return any(layer.encrypted for layer in self.layers)

    def identity(self) -> dict[str, Any]:
        return {"layers": [layer.identity() for layer in self.layers]}

    def close(self) -> None:
        for layer in self.layers:
            with suppress(OSError):
                os.close(layer.fd)
        self.layers.clear()


@contextmanager
def open_disk(
    path: str | os.PathLike[str],
    *,
    allowed_dirs: Iterable[str | os.PathLike[str]] | None,
    fmt: str | None = None,
) -> Iterator[OpenedDisk]:
    """Resolve the backing chain of ``path`` and open every layer read-only.

    Every layer must be a regular file; backing files must lie inside ``allowed_dirs``
    (``None`` disables that rule: only for an image given by hand, never for a sweep).

    Raises:
        InspectError: a layer could not be followed (outside the allowed directories,
            missing, a loop, a network backing), or a format dissect cannot read safely.
    """
    layers = resolve_chain(path, fmt=fmt, allowed_dirs=allowed_dirs)
    for layer in layers:
        if layer.error:
            raise InspectError(layer.error)
    disk = OpenedDisk()
    try:
        for index, layer in enumerate(layers):
            disk.layers.append(_open_layer(str(layer.path), layer.format, backing=index > 0))
        _check_supported(disk)
        yield disk
    finally:
        disk.close()


def _open_layer(path: str, declared: str | None, *, backing: bool) -> OpenedLayer:
    # Backing files were checked on their real path by resolve_chain; open that same path.
    target = os.path.realpath(path) if backing else path
    with open_image(target) as img:
        info = read_image_info(img, declared)
        # A descriptor of our own that outlives the context manager's.
        fd = os.dup(img.fd)
        os.set_inheritable(fd, False)
        return OpenedLayer(
            path=path,
            format=info.format,
            fd=fd,
            st=img.st,
            encrypted=info.encrypted or info.format == "luks",
        )


def _check_supported(disk: OpenedDisk) -> None:
    for index, layer in enumerate(disk.layers):
        if layer.format not in SUPPORTED:
            raise InspectError(f"image format {layer.format} is not supported: {layer.path}")
        if layer.format == "vmdk" and _is_text_descriptor(layer):
            raise InspectError(
                f"vmdk descriptor with separate extent files is not supported: {layer.path}"
            )
        if index + 1 < len(disk.layers) and layer.format != "qcow2":
            raise InspectError(
                f"backing files are followed only for qcow2 (not {layer.format}): {layer.path}"
            )


def _is_text_descriptor(layer: OpenedLayer) -> bool:
    return os.pread(layer.fd, 4, 0) == b"# Di"

"""A disk's backing chain, read from image headers — safely.

libvirt reports ``<backingStore>`` only for running VMs, so vmwarden reads the chain itself.
The rules that make this safe on untrusted images:

- headers are parsed in Python (:mod:`~vmwarden.inspect.header`); nothing is executed;
- a backing link is followed only to a *regular file*, and when ``allowed_dirs`` is given,
  only to one whose real path (symlinks resolved) lies inside one of them; the check is made
  before the file is opened, so a link to ``/etc/shadow`` is never opened at all;
- a declared format is trusted over the magic (``raw`` is never probed);
- loops, over-deep chains, network and ``json:`` backings stop the walk with ``error`` set.

Example::

    >>> layers = resolve_chain("/var/lib/libvirt/images/web01.qcow2",
    ...                        allowed_dirs=["/var/lib/libvirt/images"])
    >>> [(l.path, l.format, l.error) for l in layers]    # doctest: +SKIP
    [('/var/lib/libvirt/images/web01.qcow2', 'qcow2', None),
     ('/var/lib/libvirt/images/templates/debian12-base.qcow2', 'qcow2', None)]
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable
from datetime import UTC, datetime

from vmwarden.errors import InspectError
from vmwarden.inspect._io import open_image
from vmwarden.inspect.header import read_image_info
from vmwarden.model import Layer

DEFAULT_MAX_DEPTH = 16
_PROTOCOL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def resolve_chain(
    path: str | os.PathLike[str],
    *,
    fmt: str | None = None,
    allowed_dirs: Iterable[str | os.PathLike[str]] | None = None,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> list[Layer]:
    """The backing chain of the image at ``path``: ``[path itself, its backing, ..., root]``.

    Args:
        path: the disk's own source file (layer 0); it may also be a block device.
        fmt: its declared format (libvirt's ``<driver type>``); ``None`` probes the magic.
        allowed_dirs: when given, backing files must resolve inside one of these directories.
        max_depth: the most layers returned; a longer chain ends with an error on the last.

    Never raises for image content: a layer that could not be read or followed carries
    ``error``, and nothing after it is read. Relative backing names resolve against the
    directory of the image that names them, as qemu does.
    """
    allowed = _real_dirs(allowed_dirs)
    layers: list[Layer] = []
    seen: set[tuple[int, int]] = set()
    current = os.path.abspath(os.fspath(path))
    declared = fmt
    is_backing = False
    while True:
        layer = Layer(path=current, format=declared)
        layers.append(layer)
        target = current
        if is_backing:
            # Open the very path that was checked, not the name (which may be a symlink).
            target = os.path.realpath(current)
            layer.error = _refuse_backing(current, target, allowed, seen)
            if layer.error:
                break
        try:
            with open_image(target, allow_block=not is_backing) as img:
                key = (img.st.st_dev, img.st.st_ino)
                if key in seen:  # swapped in after the check above
                    layer.error = f"backing chain loop: {current}"
                    break
                seen.add(key)
                layer.type = "block" if img.is_block else "file"
                layer.mtime = datetime.fromtimestamp(img.st.st_mtime, tz=UTC)
                info = read_image_info(img, declared)
        except InspectError as exc:
            layer.error = str(exc)
            break
        layer.format = info.format
        if info.unfollowed_parent:
            layer.error = info.unfollowed_parent
            break
        if info.backing is None:
            break
        if len(layers) >= max_depth:
            layer.error = f"backing chain deeper than {max_depth} layers"
            break
        if info.backing.startswith("json:") or _PROTOCOL.match(info.backing):
            layers.append(
                Layer(
                    path=info.backing,
                    format=info.backing_format,
                    type="network",
                    error=f"network backing not followed: {info.backing}",
                )
            )
            break
        current = os.path.normpath(os.path.join(os.path.dirname(current), info.backing))
        declared = info.backing_format
        is_backing = True
    return layers


def chain_root(layers: list[Layer]) -> Layer | None:
    """The root layer, or ``None`` when the chain is empty."""
    return layers[-1] if layers else None


def _real_dirs(dirs: Iterable[str | os.PathLike[str]] | None) -> list[str] | None:
    if dirs is None:
        return None
    return [os.path.realpath(os.fspath(d)) for d in dirs]


def _inside(real: str, allowed: list[str]) -> bool:
    return any(real == d or real.startswith(d.rstrip(os.sep) + os.sep) for d in allowed)


def _refuse_backing(
    path: str, real: str, allowed: list[str] | None, seen: set[tuple[int, int]]
) -> str | None:
    """Why the backing file ``path`` (real path ``real``) must not be opened, or ``None``.

    Only ``stat`` happens here, never an open.
    """
    if allowed is not None and not _inside(real, allowed):
        return f"backing file outside allowed directories: {path}"
    try:
        st = os.stat(real)
    except FileNotFoundError:
        return f"backing file missing: {path}"
    except OSError as exc:
        return f"backing file not accessible: {path}: {exc.strerror}"
    if not stat.S_ISREG(st.st_mode):
        return f"backing file is not a regular file: {path}"
    if (st.st_dev, st.st_ino) in seen:
        return f"backing chain loop: {path}"
    return None

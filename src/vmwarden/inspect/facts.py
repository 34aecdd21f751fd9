"""Disk image → :class:`~vmwarden.model.GuestFacts`, in this process.

This is what the sandboxed worker runs (:mod:`vmwarden.inspect.worker`); callers that scan
estates use :class:`~vmwarden.inspect.sandbox.InspectorPool` instead, which runs it in
long-lived, resource-limited, unprivileged child processes.

Example::

    >>> facts = inspect_image("/var/lib/libvirt/images/web01.qcow2",
    ...                       allowed_dirs=["/var/lib/libvirt/images"],
    ...                       fingerprint_key=key)           # doctest: +SKIP
    >>> facts.os_name, facts.os_version, len(facts.packages)  # doctest: +SKIP
    ('debian', '12', 412)

Which layer reads what: dissect.target opens the containers (qcow2 with its backing chain
assembled here, raw, vmdk, vhdx), partition tables (MBR/GPT), LVM and the filesystems, and
mounts the guest root (following its /etc/fstab); the readers in :mod:`vmwarden.inspect.guest`
parse the guest's files themselves through ``target.fs``.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, TypeVar

from vmwarden.errors import InspectError
from vmwarden.inspect.disk import GuestDisk, open_guest
from vmwarden.inspect.guest.files import GuestFiles, GuestReadError
from vmwarden.inspect.guest.network import read_network
from vmwarden.inspect.guest.packages import read_packages
from vmwarden.inspect.guest.services import read_enabled_services
from vmwarden.inspect.guest.ssh import read_host_keys, read_sshd_config
from vmwarden.inspect.guest.system import (
    read_hostname,
    read_kernels,
    read_machine_id,
    read_os_release,
)
from vmwarden.inspect.guest.timesync import read_time_sync
from vmwarden.inspect.guest.users import read_users
from vmwarden.inspect.guest.windows import (
    Registry,
    read_computer_name,
    read_machine_guid,
    read_profiles,
    read_programs,
    read_windows_version,
)
from vmwarden.inspect.opener import open_disk
from vmwarden.inspect.served import ServedSource
from vmwarden.model import GuestFacts

T = TypeVar("T")


def inspect_image(
    path: str | os.PathLike[str],
    *,
    allowed_dirs: Iterable[str | os.PathLike[str]] | None,
    fingerprint_key: bytes,
    fmt: str | None = None,
) -> GuestFacts:
    """Facts of the disk image at ``path``, read in this process.

    Args:
        path: the image (its backing chain is followed, inside ``allowed_dirs`` only).
        allowed_dirs: directories backing files must lie in (``None``: no restriction).
        fingerprint_key: the secret that keys password-hash fingerprints.
        fmt: the declared format (libvirt's ``<driver type>``), ``None`` to probe.

    Raises:
        InspectError: the image cannot be read at all (unsupported, corrupt, a backing file
            outside ``allowed_dirs``); facts that merely could not be read are ``None``
            with a reason in ``errors``.
    """
    started = time.monotonic()
    name = os.path.abspath(os.fspath(path))
    with open_disk(name, allowed_dirs=allowed_dirs, fmt=fmt) as disk:
        facts, _stats = inspect_layers(
            [(layer.fd, layer.format) for layer in disk.layers],
            image=name,
            fingerprint_key=fingerprint_key,
            encrypted=disk.encrypted,
        )
        facts.identity = disk.identity()
    facts.seconds = round(time.monotonic() - started, 4)
    return facts


def inspect_layers(
    layers: list[tuple[int | ServedSource, str]],
    *,
    image: str,
    fingerprint_key: bytes,
    encrypted: bool = False,
) -> tuple[GuestFacts, dict[str, int]]:
    """Facts of a disk given as open descriptors ``[(fd, format)]``, top layer first.

    Returns the facts and read statistics: ``bytes_read`` from the host files,
    ``image_bytes`` (the layers' file sizes, all of them) and ``virtual_bytes`` (the disk
    the guest sees); the first is the one to keep small, the others are its denominators.

    Raises:
        InspectError: the disk cannot be opened by dissect.
    """
    started = time.monotonic()
    facts = GuestFacts(image=image, inspected_at=datetime.now(UTC).isoformat())
    if encrypted:
        facts.encrypted = True
        facts.errors.append("disk image is encrypted; guest contents not read")
        return facts, {"bytes_read": 0, "image_bytes": 0, "virtual_bytes": 0}
    guest = open_guest(layers, name=image)
    try:
        facts.encrypted = guest.encrypted
        facts.filesystems = guest.filesystems
        facts.errors += guest.notes
        if guest.target is None:
            facts.errors.append("encrypted volume (LUKS); guest contents not read")
        else:
            collect(guest, facts, fingerprint_key)
    finally:
        stats = {
            "bytes_read": guest.bytes_read,
            "image_bytes": guest.image_size,
            "virtual_bytes": guest.virtual_size,
        }
    facts.seconds = round(time.monotonic() - started, 4)
    return facts, stats


def collect(guest: GuestDisk, facts: GuestFacts, key: bytes) -> None:
    """Run every reader on the mounted guest; each failure is recorded, not raised."""
    target = guest.target
    files = GuestFiles(target.fs)

    def fact(name: str, reader: Callable[[], T]) -> T | None:
        try:
            return reader()
        except GuestReadError as exc:
            facts.errors.append(f"{name}: {exc}")
        except MemoryError:
            raise
        except Exception as exc:  # a reader's boundary: a hostile file is a recorded failure
            facts.errors.append(f"{name}: {type(exc).__name__}: {exc}")
        return None

    release = fact("os", lambda: read_os_release(files))
    if release is not None:
        facts.os_family, facts.os_name = release.family, release.name
        facts.os_version, facts.os_pretty = release.version, release.pretty
    else:
        _dissect_os(target, facts)
    if facts.os_family == "windows":
        _windows(files, facts, fact)  # the Linux readers have nothing to read on Windows
        return
    facts.hostname = fact("hostname", lambda: read_hostname(files))
    facts.machine_id = fact("machine_id", lambda: read_machine_id(files))
    facts.kernels = fact("kernels", lambda: read_kernels(files))
    facts.packages = fact("packages", lambda: read_packages(files))
    if facts.packages is None and not any(e.startswith("packages:") for e in facts.errors):
        facts.errors.append("packages: no dpkg or rpm database found")
    users = fact("users", lambda: read_users(files, key))
    if users is not None:
        facts.users, problems = users
        facts.errors += problems
        if facts.users is None:
            facts.errors.append("users: /etc/passwd not found")
    facts.services_enabled = fact("services", lambda: read_enabled_services(files))
    facts.sshd = fact("sshd", lambda: read_sshd_config(files))
    facts.ssh_host_keys = fact("ssh_host_keys", lambda: read_host_keys(files))
    names = {p.name for p in facts.packages} if facts.packages is not None else None
    enabled = set(facts.services_enabled) if facts.services_enabled is not None else None
    facts.time_sync = fact("time_sync", lambda: read_time_sync(files, names, enabled))
    facts.network = fact("network", lambda: read_network(files))


def _dissect_os(target: Any, facts: GuestFacts) -> None:
    """No os-release: ask dissect's OS plugin (Windows registry, BSD, ...), best effort."""
    try:
        os_name = str(target.os)
    except Exception as exc:  # dissect found no OS plugin
        facts.errors.append(f"os: not recognised: {type(exc).__name__}")
        return
    family = {"windows": "windows", "linux": "linux", "bsd": "bsd"}.get(os_name)
    if family is None and os_name in ("freebsd", "openbsd", "netbsd", "citrix-netscaler"):
        family = "bsd"
    facts.os_family = family
    facts.os_name = os_name if os_name not in ("unix", "default") else None
    if facts.os_name is None:
        facts.errors.append("os: no os-release and not recognised by dissect")


def _windows(files: GuestFiles, facts: GuestFacts, fact: Callable[[str, Any], Any]) -> None:
    """Windows facts from the registry hives (:mod:`vmwarden.inspect.guest.windows`); a
    hive that is missing or corrupt leaves the facts needing it unknown, with the reason."""
    reg = Registry(files)
    release = fact("os", lambda: read_windows_version(reg))
    if release is not None:
        facts.os_version, facts.os_pretty = release.version, release.pretty
    facts.hostname = fact("hostname", lambda: read_computer_name(reg))
    facts.machine_id = fact("machine_id", lambda: read_machine_guid(reg))
    facts.users = fact("users", lambda: read_profiles(reg))
    facts.packages = fact("packages", lambda: read_programs(reg))


def new_fingerprint_key() -> bytes:
    """A fresh 32-byte secret for password-hash fingerprints."""
    return secrets.token_bytes(32)


def inspect_image_json(
    path: str | os.PathLike[str],
    *,
    allowed_dirs: Iterable[str | os.PathLike[str]] | None = None,
    fingerprint_key: bytes | None = None,
    timeout: float = 60.0,
    sandbox: bool = True,
) -> dict[str, Any]:
    """What ``vmwarden inspect IMAGE`` prints: header fingerprint, digest and guest facts.

    ``allowed_dirs`` defaults to the image's own directory; ``fingerprint_key`` to a key
    made for this call (fingerprints then compare only within this output; pass the store's
    key, :meth:`vmwarden.store.facts.FactsCache.fingerprint_key`, to compare across runs).
    The guest is read in a sandboxed worker unless ``sandbox`` is false. A guest that
    cannot be read gives ``"guest": null`` and ``"guest_error"``, never an exception.

    Raises:
        InspectError: the image file itself cannot be opened (header or digest).
    """
    from vmwarden.inspect.digest import digest_file, fingerprint

    name = os.path.abspath(os.fspath(path))
    result: dict[str, Any] = fingerprint(name)
    result["path"] = name
    result["digest"] = digest_file(name)
    dirs = list(allowed_dirs) if allowed_dirs is not None else [os.path.dirname(name)]
    key = fingerprint_key if fingerprint_key is not None else new_fingerprint_key()
    try:
        if sandbox:
            from vmwarden.inspect.sandbox import InspectorPool

            pool = InspectorPool(workers=1, timeout=timeout, allowed_dirs=dirs, fingerprint_key=key)
            with pool:
                facts = pool.inspect(name)
        else:
            facts = inspect_image(name, allowed_dirs=dirs, fingerprint_key=key)
    except InspectError as exc:
        result["guest"] = None
        result["guest_error"] = str(exc)
    else:
        result["guest"] = facts.to_dict()
    return result

"""What an offline look inside a disk found: the guest's OS, software, users and settings.

Every list/field that could not be read stays ``None`` (unknown) and the reason goes into
``errors``; an empty list means "read, and there were none". Password hashes are never kept:
``User.password_fingerprint`` is a keyed HMAC, equal for equal hashes, useless to crack.

For a running VM whose QEMU guest agent answers, ``merge_live`` lays the agent's live facts
over the disk's: the disk of a running guest is read crash-consistent and may be stale, the
agent says what runs now. ``sources`` records which facts came from where.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass(slots=True)
class Package:
    name: str
    version: str
    arch: str | None = None
    source: str | None = None  # source package (dpkg) or source rpm
    manager: str = "dpkg"  # dpkg | rpm | apk | windows (a Windows Uninstall registry entry)


@dataclass(slots=True)
class User:
    name: str
    uid: int | None = None
    gid: int | None = None
    shell: str | None = None
    home: str | None = None
    password: str = "unknown"  # hash | locked | empty | none | unknown
    password_fingerprint: str | None = None  # HMAC-SHA256(key, hash), only when password == hash
    last_change: str | None = None  # ISO date from shadow field 3
    max_days: int | None = None
    expires: str | None = None  # ISO date from shadow field 8 (account expiry)


@dataclass(slots=True)
class HostKey:
    type: str  # ssh-ed25519, ssh-rsa, ecdsa-sha2-nistp256, ...
    fingerprint: str  # SHA256:<base64>, as ssh-keygen -l prints it
    path: str | None = None


@dataclass(slots=True)
class GuestFacts:
    """Facts of one disk image. ``image`` is the path inspected; ``identity`` its cache key."""

    image: str
    os_family: str | None = None  # linux | windows | bsd
    os_name: str | None = None  # e.g. "debian"
    os_version: str | None = None  # e.g. "12"
    os_pretty: str | None = None
    kernels: list[str] | None = None
    hostname: str | None = None
    machine_id: str | None = None
    packages: list[Package] | None = None
    users: list[User] | None = None
    services_enabled: list[str] | None = None
    sshd: dict[str, str] | None = None  # lower-cased directive -> value, e.g. permitrootlogin
    ssh_host_keys: list[HostKey] | None = None
    time_sync: dict[str, Any] | None = None  # {"chrony": bool, "ntp": bool, "timesyncd": bool, ...}
    network: list[dict[str, Any]] | None = None
    encrypted: bool | None = None
    filesystems: list[str] | None = None
    # Live-only facts (the QEMU guest agent of a running VM); a disk cannot tell them.
    kernel_release: str | None = None  # the running kernel (uname -r); ``kernels``: installed
    logged_in: list[dict[str, Any]] | None = None  # {"name", "domain", "login_time"}
    mounts: list[dict[str, Any]] | None = None  # {"mountpoint", "device", "fstype", ...}
    timezone: dict[str, Any] | None = None  # {"name", "offset"} (seconds east of UTC)
    # SCAP benchmark results by engine.benchmarks' key: {score, failed, counts, ...} | {error}
    benchmarks: dict[str, dict[str, Any]] | None = None
    sources: dict[str, list[str]] = field(default_factory=dict)  # "agent"/"disk" -> fields
    errors: list[str] = field(default_factory=list)
    identity: dict[str, Any] | None = None
    inspected_at: str | None = None
    seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GuestFacts:
        """Inverse of ``to_dict`` (facts travel as JSON from the sandboxed worker and the cache)."""
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in data.items() if k in known}
        if kw.get("packages") is not None:
            kw["packages"] = [Package(**p) for p in kw["packages"]]
        if kw.get("users") is not None:
            kw["users"] = [User(**u) for u in kw["users"]]
        if kw.get("ssh_host_keys") is not None:
            kw["ssh_host_keys"] = [HostKey(**k) for k in kw["ssh_host_keys"]]
        return cls(**kw)

    def package_versions(self) -> dict[str, str] | None:
        """name -> version (None when packages are unknown)."""
        if self.packages is None:
            return None
        return {p.name: p.version for p in self.packages}


# Facts the guest agent reports live and that win over the disk's of the same kind. The rest
# (packages, accounts and shadow, sshd, host keys, services) only the disk knows.
LIVE_FIELDS = (
    "os_family",
    "os_name",
    "os_version",
    "os_pretty",
    "hostname",
    "kernel_release",
    "logged_in",
    "filesystems",
    "mounts",
    "network",
    "timezone",
)
_BOOKKEEPING = frozenset({"image", "errors", "identity", "inspected_at", "seconds", "sources"})


def merge_live(disk: GuestFacts | None, live: GuestFacts) -> GuestFacts:
    """A new ``GuestFacts``: the disk's facts with the agent's live ones laid over them.

    Neither input is changed (disk facts are shared with the facts cache and with images of
    the same path). A live fact that is ``None`` (the agent did not say) keeps the disk's;
    ``errors`` keeps both sides' notes, so an agent that did not answer is on record.
    """
    base = disk if disk is not None else GuestFacts(image=live.image)
    merged = GuestFacts.from_dict(base.to_dict())
    taken = [name for name in LIVE_FIELDS if getattr(live, name) is not None]
    for name in taken:
        setattr(merged, name, getattr(live, name))
    from_disk = [
        f.name
        for f in fields(GuestFacts)
        if f.name not in _BOOKKEEPING
        and f.name not in taken
        and disk is not None
        and getattr(disk, f.name) is not None
    ]
    merged.sources = {"agent": taken, "disk": from_disk}
    merged.errors = list(base.errors) + [e for e in live.errors if e not in base.errors]
    return merged

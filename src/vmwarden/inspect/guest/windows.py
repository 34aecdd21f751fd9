"""Windows guests: version, computer name, accounts and programs from the registry hives.

Read straight from ``Windows\\System32\\config\\{SOFTWARE,SYSTEM}`` with dissect.regf, key by
key, rather than through dissect.target's registry plugin: that plugin drops a hive it
cannot open with only a log line, so a corrupt SOFTWARE hive would read as "no version, no
programs" with no reason, and it hard-codes ``ControlSet001`` where Windows uses the set
``SYSTEM\\Select\\Current`` names. Here a missing or unreadable hive is a
:class:`GuestReadError` naming it, recorded against each fact that needed it.

Only named keys and one level of subkeys (profiles, programs) are read, never a walk, so a
hostile hive's cycles are never followed; lists are cut at :data:`MAX_ENTRIES`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from vmwarden.inspect.guest.files import GuestFiles, GuestReadError
from vmwarden.inspect.guest.system import OsRelease
from vmwarden.model import Package, User

CONFIG = "/sysvol/Windows/System32/config"
MAX_HIVE = 512 * 1024 * 1024  # a large server's SOFTWARE is a few hundred MiB at most
MAX_ENTRIES = 10_000  # profiles or programs read per key
CURRENT_VERSION = r"Microsoft\Windows NT\CurrentVersion"
UNINSTALL = {
    r"Microsoft\Windows\CurrentVersion\Uninstall": None,  # the system's own architecture
    r"WOW6432Node\Microsoft\Windows\CurrentVersion\Uninstall": "x86",  # 32-bit on 64-bit
}
#: Accounts every Windows has in ProfileList, by their well-known SID.
WELL_KNOWN = {"S-1-5-18": "SYSTEM", "S-1-5-19": "LOCAL SERVICE", "S-1-5-20": "NETWORK SERVICE"}


class Registry:
    """The guest's system hives, each opened on first use (and its failure kept)."""

    def __init__(self, files: GuestFiles) -> None:
        self._files = files
        self._hives: dict[str, Any] = {}

    def hive(self, name: str) -> Any:
        """The open hive ``name`` (``SOFTWARE``, ``SYSTEM``); raises if missing or unreadable."""
        if name not in self._hives:
            try:
                self._hives[name] = self._open(name)
            except GuestReadError as exc:
                self._hives[name] = exc
        found = self._hives[name]
        if isinstance(found, GuestReadError):
            raise found
        return found

    def _open(self, name: str) -> Any:
        from dissect.regf import RegistryHive

        path = f"{CONFIG}/{name}"
        fh = self._files.open(path, limit=MAX_HIVE)
        if fh is None:
            raise GuestReadError(f"{name} hive not found ({path})")
        try:
            if fh.read(4) != b"regf":  # dissect.regf does not check; garbage would parse
                raise GuestReadError(f"{name} hive: not a registry hive (no regf signature)")
            return RegistryHive(fh)
        except GuestReadError:
            raise
        except Exception as exc:  # a hostile hive: whatever its parser raises
            raise GuestReadError(f"{name} hive: {_why(exc)}") from None

    def key(self, hive: str, path: str) -> Any | None:
        """The key at ``path`` in ``hive``, ``None`` when it does not exist."""
        from dissect.regf.exceptions import RegistryKeyNotFoundError

        root = self.hive(hive)
        try:
            return root.open(path)
        except RegistryKeyNotFoundError:
            return None
        except Exception as exc:  # as above
            raise GuestReadError(f"{hive}\\{path}: {_why(exc)}") from None


def values(key: Any) -> dict[str, Any]:
    """A key's values by lower-cased name (registry names are case-insensitive)."""
    found: dict[str, Any] = {}
    try:
        for value in key.values():
            found.setdefault(value.name.lower(), value.value)
            if len(found) > MAX_ENTRIES:
                break
    except Exception as exc:  # a damaged value list: the key's values are unknown
        raise GuestReadError(f"values of {key.name}: {_why(exc)}") from None
    return found


def subkeys(key: Any) -> Iterator[Any]:
    try:
        for count, sub in enumerate(key.subkeys()):
            if count >= MAX_ENTRIES:
                return
            yield sub
    except Exception as exc:  # as above
        raise GuestReadError(f"subkeys of {key.name}: {_why(exc)}") from None


def read_windows_version(reg: Registry) -> OsRelease:
    """``os_version`` as ``ver`` prints it (``10.0.20348.2227``: NT major.minor, build,
    update revision), ``os_pretty`` the product name (``Windows Server 2022 Standard``).

    Windows 10 and later keep ``CurrentVersion`` at ``6.3`` and give the real NT version in
    ``CurrentMajor/MinorVersionNumber``; Windows 11 still says "Windows 10" in ProductName
    and is told by its build (22000 or later).
    """
    key = reg.key("SOFTWARE", CURRENT_VERSION)
    if key is None:
        raise GuestReadError(f"SOFTWARE\\{CURRENT_VERSION} not found")
    v = values(key)
    major, minor = v.get("currentmajorversionnumber"), v.get("currentminorversionnumber")
    nt = f"{major}.{minor or 0}" if isinstance(major, int) else _text(v.get("currentversion"))
    build = _text(v.get("currentbuildnumber")) or _text(v.get("currentbuild"))
    ubr = v.get("ubr")
    parts = [nt, build, str(ubr) if isinstance(ubr, int) and build else None]
    version = ".".join(p for p in parts if p) if nt else None
    product = _text(v.get("productname"))
    if product and nt == "10.0" and build.isdigit() and int(build) >= 22_000:
        product = product.replace("Windows 10", "Windows 11")
    return OsRelease(family="windows", name="windows", version=version, pretty=product or None)


def read_computer_name(reg: Registry) -> str | None:
    """The NetBIOS computer name of the control set Windows boots (``Select\\Current``)."""
    select = reg.key("SYSTEM", "Select")
    current = values(select).get("current") if select is not None else None
    if not isinstance(current, int) or not 0 < current < 1000:
        raise GuestReadError("SYSTEM\\Select\\Current missing: no current control set")
    path = f"ControlSet{current:03d}\\Control\\ComputerName\\ComputerName"
    key = reg.key("SYSTEM", path)
    if key is None:
        return None
    return _text(values(key).get("computername")).strip() or None


def read_machine_guid(reg: Registry) -> str | None:
    """``Cryptography\\MachineGuid``: made at setup (and by sysprep), so clones share it."""
    key = reg.key("SOFTWARE", r"Microsoft\Cryptography")
    guid = _text(values(key).get("machineguid")) if key is not None else ""
    return guid.strip().lower() or None


def read_profiles(reg: Registry) -> list[User]:
    """Every account with a profile (ProfileList): the well-known service accounts by
    name, others by their profile folder's name, as Windows names the folder at first
    logon. Password state stays ``unknown``: SAM hashes are not read."""
    key = reg.key("SOFTWARE", CURRENT_VERSION + r"\ProfileList")
    if key is None:
        return []
    users = []
    for sub in subkeys(key):
        home = _text(values(sub).get("profileimagepath")) or None
        name = WELL_KNOWN.get(sub.name) or (home.rstrip("\\").rsplit("\\", 1)[-1] if home else "")
        users.append(User(name=name or sub.name, home=_expand(home) if home else None))
    return users


def read_programs(reg: Registry) -> list[Package]:
    """Programs as "Programs and Features" lists them: Uninstall entries with a
    DisplayName that are not system components, as packages of manager ``windows``
    (name = DisplayName, version = DisplayVersion, arch ``x86`` for 32-bit ones)."""
    programs: list[Package] = []
    for path, arch in UNINSTALL.items():
        key = reg.key("SOFTWARE", path)
        for sub in subkeys(key) if key is not None else ():
            v = values(sub)
            name = _text(v.get("displayname")).strip()
            if not name or v.get("systemcomponent") == 1 or v.get("parentkeyname"):
                continue
            version = _text(v.get("displayversion")).strip()
            programs.append(Package(name=name, version=version, arch=arch, manager="windows"))
    return sorted(programs, key=lambda p: (p.name, p.arch or ""))


def _expand(path: str) -> str:
    """``%SystemRoot%`` and ``%SystemDrive%`` as on a default install (``C:\\Windows``)."""
    for var, value in (("%systemroot%", "C:\\Windows"), ("%systemdrive%", "C:")):
        if path.lower().startswith(var):
            path = value + path[len(var) :]
    return path


def _text(value: Any) -> str:
    """A string value; anything else (a hostile hive's DWORD ProductName) counts as absent."""
    return value if isinstance(value, str) else ""


def _why(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__

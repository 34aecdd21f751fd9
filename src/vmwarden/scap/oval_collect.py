"""Collecting OVAL items from the guest's files, per object type.

A collector gets the object's entities (values already resolved from variables), its
behaviors and the evaluator (for ``variable_object``), and returns the items found. Types
that only exist on a running system raise :class:`NotCollected` (the test is "not evaluated").
File contents are hostile: a file matched by a textfilecontent object is read up to
:data:`MAX_TEXT` bytes and a larger one makes the object "error" rather than half-read; walks
are bounded in depth and entries.
"""

from __future__ import annotations

import functools
import posixpath
import re
import stat
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from vmwarden.inspect.guest.files import GuestFiles, GuestReadError
from vmwarden.inspect.guest.packages import read_packages
from vmwarden.scap.oval_limits import REGEX_SECONDS, SearchTimeout, time_bound
from vmwarden.scap.oval_ops import CompareError, compare, regex
from vmwarden.scap.oval_search import finditer

if TYPE_CHECKING:
    from vmwarden.scap.oval_eval import Entity, Evaluator

Item = dict[str, list[str]]
#: Largest file a textfilecontent object reads (its regexes run on the whole text).
MAX_TEXT = 1024 * 1024
#: Deepest recursion of a directory walk, and most entries a walk visits.
MAX_DEPTH = 24
MAX_WALK = 300_000

_TYPES = {
    stat.S_IFREG: "regular",
    stat.S_IFDIR: "directory",
    stat.S_IFLNK: "symbolic link",
    stat.S_IFBLK: "block special",
    stat.S_IFCHR: "character special",
    stat.S_IFIFO: "named pipe",
    stat.S_IFSOCK: "socket",
}
_BITS = (
    ("suid", stat.S_ISUID), ("sgid", stat.S_ISGID), ("sticky", stat.S_ISVTX),
    ("uread", stat.S_IRUSR), ("uwrite", stat.S_IWUSR), ("uexec", stat.S_IXUSR),
    ("gread", stat.S_IRGRP), ("gwrite", stat.S_IWGRP), ("gexec", stat.S_IXGRP),
    ("oread", stat.S_IROTH), ("owrite", stat.S_IWOTH), ("oexec", stat.S_IXOTH),
)  # fmt: skip
_META = set(".^$*+?()[]{}|")


class NotCollected(Exception):
    """The object's items only exist on a running system (or in a form not read offline)."""


class Context:
    """The guest's files with the per-evaluation caches collectors share."""

    def __init__(self, files: GuestFiles) -> None:
        self.files = files
        self._lstat: dict[str, Any] = {}
        self._list: dict[str, list[str] | None] = {}
        self._text: dict[str, str | None] = {}
        self.cache: dict[str, Any] = {}
        self.walked = 0

    def lstat(self, path: str) -> Any:
        if path not in self._lstat:
            self._lstat[path] = self.files.lstat(path)
        return self._lstat[path]

    def listdir(self, path: str) -> list[str] | None:
        if path not in self._list:
            scan = getattr(self.files, "scan", None)
            if scan is None:
                self._list[path] = self.files.listdir(path)
            else:  # names and their lstat in one pass (a directory read, no path resolution)
                entries = scan(path)
                self._list[path] = None if entries is None else [n for n, _ in entries]
                base = path.rstrip("/")
                for name, st in entries or []:
                    self._lstat[f"{base}/{name}"] = st
        return self._list[path]

    def is_dir(self, path: str) -> bool:
        st = self.lstat(path)
        return st is not None and stat.S_ISDIR(st.st_mode)

    def text(self, path: str) -> str | None:
        """A regular file's text (``None`` when absent or not regular)."""
        if path not in self._text:
            st = self.lstat(path)
            if st is None or stat.S_ISDIR(st.st_mode):
                self._text[path] = None
            else:
                self._text[path] = self.files.read_text(path, limit=MAX_TEXT)
        return self._text[path]

    def walk(self, top: str, max_depth: int) -> list[str]:
        """``top`` and the directories under it (not through links), to ``max_depth`` levels."""
        key = f"walk:{max_depth}:{top}"
        if key not in self.cache:
            self.cache[key] = self._walk(top, max_depth)
        return self.cache[key]

    def _walk(self, top: str, max_depth: int) -> list[str]:
        out: list[str] = []
        stack = [(top, 0)]
        self.walked = 0
        while stack:
            d, depth = stack.pop()
            out.append(d)
            if (max_depth >= 0 and depth >= max_depth) or depth >= MAX_DEPTH:
                continue
            for name in reversed(self.listdir(d) or []):
                self._count()
                child = posixpath.join(d, name)
                if self.is_dir(child):
                    stack.append((child, depth + 1))
        return out

    def _count(self) -> None:
        self.walked += 1
        if self.walked > MAX_WALK:
            raise GuestReadError(f"more than {MAX_WALK} entries walked")

    def match_paths(self, pattern: str, *, dirs: bool) -> list[str]:
        """Paths (directories when ``dirs``, else anything but) the regex matches, found by
        walking from the longest literal directory its start names."""
        rx = regex(pattern)
        top = literal_dir(pattern)
        if not self.is_dir(top):
            return []
        found = []
        for d in self.walk(top, -1):
            if dirs:
                if rx.search(d):
                    found.append(d)
                continue
            for name in self.listdir(d) or []:
                p = posixpath.join(d, name)
                if rx.search(p) and not self.is_dir(p):
                    found.append(p)
        return found


def literal_dir(pattern: str) -> str:
    """The directory a path regex must start in (``^/etc/a\\.d/.*`` → /etc/a.d)."""
    if not pattern.startswith("^/"):
        return "/"
    out = []
    i = 1
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern) and not pattern[i + 1].isalnum():
            out.append(pattern[i + 1])
            i += 2
            continue
        if ch in _META or ch == "\\":
            break
        out.append(ch)
        i += 1
    prefix = "".join(out)
    if i < len(pattern) and pattern[i] in "?*{":  # the last literal char is optional
        prefix = prefix[:-1]
    head = prefix[: prefix.rfind("/") + 1] or "/"
    return head.rstrip("/") or "/"


def matches(ent: Entity, value: str) -> bool:
    """Whether an object entity selects ``value`` (any of its values, for var_ref lists)."""
    try:
        return any(compare(value, v, ent.datatype, ent.operation) for v in ent.values)
    except CompareError:
        return False


def _paths(
    ctx: Context, ents: dict[str, Entity], beh: dict[str, str]
) -> list[tuple[str, str | None]]:
    """(directory, file name or None for the directory itself) of a file-like object."""
    if "filepath" in ents:
        ent = ents["filepath"]
        if ent.operation == "equals":
            fps = list(ent.values)
        elif ent.operation == "pattern match":
            fps = [p for v in ent.values for p in ctx.match_paths(v, dirs=False)]
        else:
            raise NotCollected(f"filepath operation {ent.operation!r}")
        return [(posixpath.dirname(p), posixpath.basename(p)) for p in fps]
    pent = ents.get("path")
    if pent is None:
        raise NotCollected("neither filepath nor path")
    if pent.operation == "equals":
        dirs = [v.rstrip("/") or "/" for v in pent.values]
    elif pent.operation == "pattern match":
        dirs = [p for v in pent.values for p in ctx.match_paths(v, dirs=True)]
    else:
        raise NotCollected(f"path operation {pent.operation!r}")
    dirs = [d for d in dict.fromkeys(dirs) if ctx.is_dir(d)]
    if beh.get("recurse_direction", "none") == "down" and "directories" in beh.get(
        "recurse", "symlinks and directories"
    ):
        depth = int(beh.get("max_depth", "-1"))
        dirs = list(dict.fromkeys(sub for d in dirs for sub in ctx.walk(d, depth)))
    fent = ents.get("filename")
    if fent is None or fent.nil:
        return [(d, None) for d in dirs]
    out: list[tuple[str, str | None]] = []
    for d in dirs:
        if fent.operation == "equals":
            out += [(d, v) for v in fent.values]
        else:
            out += [(d, n) for n in ctx.listdir(d) or [] if matches(fent, n)]
    return out


def _file_item(ctx: Context, d: str, name: str | None) -> Item | None:
    fp = d if name is None else posixpath.join(d, name)
    st = ctx.lstat(fp)
    if st is None:
        return None
    item: Item = {
        "filepath": [fp],
        "path": [d],
        "filename": [name or ""],
        "user_id": [str(st.st_uid)],
        "group_id": [str(st.st_gid)],
        "size": [str(st.st_size)],
    }
    item.update(_mode_fields(st.st_mode))  # type and permission bits: one dict per mode
    return item


@functools.lru_cache(maxsize=1024)
def _mode_fields(mode: int) -> Item:
    out: Item = {"type": [_TYPES.get(stat.S_IFMT(mode), "unknown")]}
    for key, bit in _BITS:
        out[key] = ["true" if mode & bit else "false"]
    return out


def file_object(
    ctx: Context, ents: dict[str, Entity], beh: dict[str, str], ev: Evaluator
) -> list[Item]:
    items = []
    for d, n in _paths(ctx, ents, beh):
        key = f"file:{d}\0{n}"
        if key not in ctx.cache:  # the same tree is judged by many objects: one item each
            ctx.cache[key] = _file_item(ctx, d, n)
        if ctx.cache[key] is not None:
            items.append(ctx.cache[key])
    return items


def textfilecontent54(
    ctx: Context, ents: dict[str, Entity], beh: dict[str, str], ev: Evaluator
) -> list[Item]:
    pattern, instance = ents.get("pattern"), ents.get("instance")
    if pattern is None:
        raise NotCollected("textfilecontent54 without a pattern")
    if pattern.operation != "pattern match":
        raise NotCollected(f"pattern operation {pattern.operation!r}")
    flags = 0 if beh.get("multiline") == "false" else re.MULTILINE
    if beh.get("singleline") == "true":
        flags |= re.DOTALL
    items: list[Item] = []
    for d, name in _paths(ctx, ents, beh):
        if name is None:
            continue
        fp = posixpath.join(d, name)
        text = ctx.text(fp)
        if text is None:
            continue
        for pat in pattern.values:
            try:
                with time_bound():
                    found = finditer(regex(pat, flags), text)
            except SearchTimeout:
                raise GuestReadError(
                    f"{fp}: pattern search used over {REGEX_SECONDS:g} s of CPU"
                ) from None
            for i, m in enumerate(found, 1):
                if instance is not None and not matches(instance, str(i)):
                    continue
                items.append(
                    {
                        "filepath": [fp],
                        "path": [d],
                        "filename": [name],
                        "pattern": [pat],
                        "instance": [str(i)],
                        "text": [m.group(0)],
                        "subexpression": [g for g in m.groups() if g is not None],
                    }
                )
    return items


def _evr_parts(version: str) -> tuple[str, str, str]:
    epoch, colon, rest = version.partition(":")
    if not colon:
        epoch, rest = "0", version
    upstream, dash, release = rest.rpartition("-")
    if not dash:
        upstream, release = rest, ""
    return epoch, upstream, release


def _packages(ctx: Context, manager: str, ents: dict[str, Entity]) -> list[Item]:
    if "packages" not in ctx.cache:
        ctx.cache["packages"] = read_packages(ctx.files) or []
    name = ents.get("name")
    items = []
    for p in ctx.cache["packages"]:
        if p.manager != manager or (name is not None and not matches(name, p.name)):
            continue
        epoch, version, release = _evr_parts(p.version)
        evr = f"{epoch}:{version}-{release}" if release else f"{epoch}:{version}"
        items.append(
            {
                "name": [p.name],
                "arch": [p.arch or ""],
                "epoch": [epoch],
                "version": [version],
                "release": [release],
                "evr": [evr],
            }
        )
    return items


def dpkginfo(
    ctx: Context, ents: dict[str, Entity], beh: dict[str, str], ev: Evaluator
) -> list[Item]:
    return _packages(ctx, "dpkg", ents)


def rpminfo(
    ctx: Context, ents: dict[str, Entity], beh: dict[str, str], ev: Evaluator
) -> list[Item]:
    return _packages(ctx, "rpm", ents)


def family(ctx: Context, ents: dict[str, Entity], beh: dict[str, str], ev: Evaluator) -> list[Item]:
    return [{"family": ["unix"]}]


def variable_object(
    ctx: Context, ents: dict[str, Entity], beh: dict[str, str], ev: Evaluator
) -> list[Item]:
    ref = ents.get("var_ref")
    if ref is None:
        raise NotCollected("variable_object without var_ref")
    # a variable without values (a regex that matched nothing) is an object without items
    found = [(v, ev.variable(v)) for v in ref.values]
    return [{"var_ref": [v], "value": vals} for v, vals in found if vals]


def password(
    ctx: Context, ents: dict[str, Entity], beh: dict[str, str], ev: Evaluator
) -> list[Item]:
    text = ctx.text("/etc/passwd") or ""
    user = ents.get("username")
    items = []
    for line in text.splitlines():
        f = line.split(":")
        if len(f) < 7 or line.startswith(("#", "+", "-")):
            continue
        if user is not None and not matches(user, f[0]):
            continue
        keys = ("username", "password", "user_id", "group_id", "gcos", "home_dir", "login_shell")
        items.append({k: [v] for k, v in zip(keys, f[:7], strict=True)})
    return items


Collector = Callable[[Context, dict[str, "Entity"], dict[str, str], "Evaluator"], list[Item]]


def _registry() -> dict[str, Collector]:
    from vmwarden.scap import oval_system

    return {
        "file_object": file_object,
        "textfilecontent54_object": textfilecontent54,
        "dpkginfo_object": dpkginfo,
        "rpminfo_object": rpminfo,
        "family_object": family,
        "variable_object": variable_object,
        "password_object": password,
        "sysctl_object": oval_system.sysctl,
        "partition_object": oval_system.partition,
        "systemdunitdependency_object": oval_system.unit_dependency,
        "systemdunitproperty_object": oval_system.unit_property,
    }


COLLECTORS: dict[str, Collector] = {}


def collector(kind: str) -> Collector | None:
    if not COLLECTORS:
        COLLECTORS.update(_registry())
    return COLLECTORS.get(kind)

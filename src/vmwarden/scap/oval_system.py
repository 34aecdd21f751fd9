"""Run-time settings read as *configured* on a powered-off guest: sysctl, mounts, systemd units.

- ``sysctl``: the value the configuration sets at boot (systemd-sysctl's order: files of
  /etc, /run, /usr/lib, /lib sysctl.d by name, the first directory winning for one name, then
  /etc/sysctl.conf last). A name no file sets is the kernel's default, unknown offline: the
  object is "not collected" and its tests "not evaluated", never a pass.
- ``partition``: the mounts of /etc/fstab with their written options ("defaults" read as rw).
- systemd: units from the unit directories; a unit's dependencies are the closure of
  Requires/Requisite/Wants/BindsTo (unit files and drop-ins) and ``.wants``/``.requires`` links;
  LoadState is loaded / masked (a link to /dev/null) / not-found; ActiveState is what boot
  would reach: "active" when the unit is in default.target's closure, else "inactive".
"""

from __future__ import annotations

import posixpath
import re
from typing import TYPE_CHECKING

from vmwarden.scap.oval_collect import Context, Item, NotCollected, matches

if TYPE_CHECKING:
    from vmwarden.scap.oval_eval import Entity, Evaluator

SYSCTL_DIRS = (
    "/etc/sysctl.d",
    "/run/sysctl.d",
    "/usr/local/lib/sysctl.d",
    "/usr/lib/sysctl.d",
    "/lib/sysctl.d",
)
UNIT_DIRS = (
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
)
_DEP_KEYS = ("requires", "requisite", "wants", "bindsto")
_UNIT_NAME = re.compile(
    r"^[\w:.@\\-]+\.(service|socket|target|timer|path|mount|automount|swap|slice|scope|device)$"
)


def _sysctl_values(ctx: Context) -> dict[str, str]:
    if "sysctl" in ctx.cache:
        return ctx.cache["sysctl"]
    chosen: dict[str, str] = {}
    for d in SYSCTL_DIRS:
        for name in ctx.listdir(d) or []:
            if name.endswith(".conf") and name not in chosen:
                chosen[name] = posixpath.join(d, name)
    paths = [chosen[n] for n in sorted(chosen)] + ["/etc/sysctl.conf"]
    values: dict[str, str] = {}
    for p in paths:
        for raw in (ctx.text(p) or "").splitlines():
            line = raw.strip()
            if not line or line[0] in "#;" or "=" not in line:
                continue
            key, _, value = line.partition("=")
            key = key.strip().lstrip("-").replace("/", ".")
            values[key] = " ".join(value.split())
    ctx.cache["sysctl"] = values
    return values


def sysctl(ctx: Context, ents: dict[str, Entity], beh: dict[str, str], ev: Evaluator) -> list[Item]:
    values = _sysctl_values(ctx)
    name = ents.get("name")
    if name is None:
        raise NotCollected("sysctl_object without a name")
    items = [{"name": [k], "value": [v]} for k, v in values.items() if matches(name, k)]
    if not items:
        raise NotCollected(
            f"sysctl {'/'.join(name.values)} is not configured: its running value is the "
            "kernel's default, unknown offline"
        )
    return items


def partition(
    ctx: Context, ents: dict[str, Entity], beh: dict[str, str], ev: Evaluator
) -> list[Item]:
    mp = ents.get("mount_point")
    items = []
    for line in (ctx.text("/etc/fstab") or "").splitlines():
        f = line.split()
        if len(f) < 4 or f[0].startswith("#") or f[2] == "swap":
            continue
        point = f[1].replace("\\040", " ")
        if mp is not None and not matches(mp, point):
            continue
        opts = [o for o in f[3].split(",") if o and o != "defaults"]
        if "ro" not in opts and "rw" not in opts:
            opts.insert(0, "rw")
        items.append(
            {"mount_point": [point], "device": [f[0]], "fs_type": [f[2]], "mount_options": opts}
        )
    return items


class Units:
    """The guest's systemd units as configured: files, masks, dependency edges."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.names: set[str] = set()
        for d in UNIT_DIRS:
            for n in ctx.listdir(d) or []:
                if _UNIT_NAME.match(n):
                    self.names.add(n)
        self._deps: dict[str, set[str]] = {}

    def file(self, unit: str) -> str | None:
        """The unit's file path (the first unit directory holding it; templates for instances)."""
        candidates = [unit]
        if "@" in unit:
            head, _, tail = unit.partition("@")
            candidates.append(f"{head}@.{tail.rsplit('.', 1)[-1]}")
        for c in candidates:
            for d in UNIT_DIRS:
                p = posixpath.join(d, c)
                if self.ctx.lstat(p) is not None:
                    return p
        return None

    def load_state(self, unit: str) -> str:
        p = self.file(unit)
        if p is None:
            return "not-found"
        target = self.ctx.files.readlink(p) if hasattr(self.ctx.files, "readlink") else None
        if target == "/dev/null" or (self.ctx.lstat(p).st_size == 0 and target is None):
            return "masked"
        return "loaded"

    def direct(self, unit: str) -> set[str]:
        if unit in self._deps:
            return self._deps[unit]
        deps: set[str] = set()
        self._deps[unit] = deps
        if self.load_state(unit) != "loaded":
            return deps
        texts = [self.ctx.text(self.file(unit) or "") or ""]
        for d in UNIT_DIRS:
            drop = posixpath.join(d, unit + ".d")
            for n in self.ctx.listdir(drop) or []:
                if n.endswith(".conf"):
                    texts.append(self.ctx.text(posixpath.join(drop, n)) or "")
        for text in texts:
            section = ""
            for raw in text.splitlines():
                line = raw.strip()
                if line.startswith("["):
                    section = line
                elif section == "[Unit]" and "=" in line:
                    key, _, value = line.partition("=")
                    if key.strip().lower() in _DEP_KEYS:
                        deps.update(v for v in value.split() if _UNIT_NAME.match(v))
        for d in UNIT_DIRS:
            for suffix in (".wants", ".requires"):
                for n in self.ctx.listdir(posixpath.join(d, unit + suffix)) or []:
                    if _UNIT_NAME.match(n):
                        deps.add(n)
        return deps

    def closure(self, unit: str) -> list[str]:
        seen: set[str] = set()
        todo = list(self.direct(unit))
        while todo:
            u = todo.pop()
            if u in seen or u == unit:
                continue
            seen.add(u)
            todo.extend(self.direct(u))
        return sorted(seen)

    def default_target(self) -> str:
        p = "/etc/systemd/system/default.target"
        target = self.ctx.files.readlink(p) if hasattr(self.ctx.files, "readlink") else None
        return posixpath.basename(target) if target else "graphical.target"


def _units(ctx: Context) -> Units:
    if "units" not in ctx.cache:
        ctx.cache["units"] = Units(ctx)
    return ctx.cache["units"]


def _selected(units: Units, ents: dict[str, Entity]) -> list[str]:
    ent = ents.get("unit")
    if ent is None:
        raise NotCollected("no unit entity")
    if ent.operation == "equals":
        return [u for u in ent.values if units.file(u) is not None]
    return sorted(u for u in units.names if matches(ent, u))


def unit_dependency(
    ctx: Context, ents: dict[str, Entity], beh: dict[str, str], ev: Evaluator
) -> list[Item]:
    units = _units(ctx)
    return [{"unit": [u], "dependency": units.closure(u)} for u in _selected(units, ents)]


def unit_property(
    ctx: Context, ents: dict[str, Entity], beh: dict[str, str], ev: Evaluator
) -> list[Item]:
    units = _units(ctx)
    prop = ents.get("property")
    if prop is None:
        raise NotCollected("no property entity")
    wanted = [p for p in ("LoadState", "ActiveState") if matches(prop, p)]
    if not wanted:
        raise NotCollected(f"unit property {'/'.join(prop.values)} is only known at run time")
    boot = set(units.closure(units.default_target()))
    items = []
    for u in _selected(units, ents):
        load = units.load_state(u)
        for p in wanted:
            if p == "LoadState":
                value = load
            else:
                value = "active" if load == "loaded" and u in boot else "inactive"
            items.append({"unit": [u], "property": [p], "value": [value]})
    return items

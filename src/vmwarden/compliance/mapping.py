"""Framework mappings: which vmwarden evidence speaks to which control of a framework.

A mapping is a YAML data file (``frameworks/<name>.yaml`` in the package, or any file an
operator writes). A control is mapped by *filter types*, not rule names: every rule of the
operator's policy that uses one of the control's filters is evidence for it, so a policy
written years after the mapping still lands on the right controls. A control may also name
a ``process``, a fact the store or host shows by itself (a scan ran over the hosts; the
power-on gate holds dormant VMs).

A mapping is checked as strictly as a policy: a filter name nobody registered would make a
control silently unassessable, so it is an error naming the file and the control.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from vmwarden.errors import PolicyError
from vmwarden.policy.filters import filters

PROCESSES: dict[str, str] = {
    "scan": "a completed scan over the hosts (hosts, VMs, when)",
    "gate-dormant": "the power-on gate holds or denies dormant VMs, and the hook is installed",
}
_COMBINATORS = frozenset({"and", "or", "not"})
_TOP_KEYS = frozenset({"framework", "title", "version", "url", "controls"})
_CONTROL_KEYS = frozenset({"id", "title", "text", "filters", "process", "max_age_days"})
_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{0,63}$")


class MappingError(PolicyError):
    """A framework mapping file is invalid or missing; the message names file and control."""


@dataclass(frozen=True, slots=True)
class Control:
    id: str
    title: str
    text: str = ""
    filters: tuple[str, ...] = ()
    process: str | None = None
    max_age_days: int | None = None  # the frequency the control's text asks for


@dataclass(frozen=True, slots=True)
class Framework:
    name: str
    title: str
    version: str
    url: str
    controls: tuple[Control, ...]
    source: str  # where it was read from, for error messages and the report


def _packaged() -> Any:
    return resources.files("vmwarden.compliance").joinpath("frameworks")


def available_frameworks() -> list[str]:
    """Names of the mappings shipped in the package (``--framework`` choices)."""
    return sorted(
        p.name.removesuffix(".yaml") for p in _packaged().iterdir() if p.name.endswith(".yaml")
    )


def load_framework(name: str) -> Framework:
    """A shipped mapping by name (``cis-controls-v8``), or a mapping file by path."""
    if name.endswith((".yaml", ".yml")) or "/" in name:
        path = Path(name)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise MappingError(f"cannot read mapping {name}: {exc}") from None
        return parse_framework(text, str(path))
    known = available_frameworks()
    if not _NAME.match(name) or name not in known:
        raise MappingError(
            f"unknown framework {name!r}",
            hint=f"choose one of: {', '.join(known)} (or give a mapping file's path)",
        )
    resource = _packaged().joinpath(f"{name}.yaml")
    return parse_framework(resource.read_text(encoding="utf-8"), f"<package>/{name}.yaml")


def parse_framework(text: str, source: str) -> Framework:
    """Validate a mapping: every problem is reported at once, each naming file and control."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise MappingError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise MappingError(f"{source}: a mapping must be a YAML mapping with `controls:`")
    problems: list[str] = [
        f"{source}: unknown key {k!r} (valid: {', '.join(sorted(_TOP_KEYS))})"
        for k in data
        if k not in _TOP_KEYS
    ]
    for key in ("framework", "title"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            problems.append(f"{source}: `{key}` must be a non-empty string")
    raw = data.get("controls")
    if not isinstance(raw, list) or not raw:
        problems.append(f"{source}: `controls` must be a non-empty list")
        raw = []
    controls: list[Control] = []
    seen: set[str] = set()
    for index, entry in enumerate(raw):
        control = _control(entry, f"{source}: controls[{index}]", problems)
        if control is None:
            continue
        if control.id in seen:
            problems.append(f"{source}: control {control.id}: listed twice")
        seen.add(control.id)
        controls.append(control)
    if problems:
        raise MappingError(
            "invalid compliance mapping:\n  " + "\n  ".join(problems),
            hint=f"filters: {', '.join(_mappable())}; processes: {', '.join(PROCESSES)}",
        )
    return Framework(
        name=data["framework"],
        title=data["title"],
        version=str(data.get("version") or ""),
        url=str(data.get("url") or ""),
        controls=tuple(controls),
        source=source,
    )


def _mappable() -> list[str]:
    return [n for n in filters.names() if n not in _COMBINATORS]


def _control(entry: Any, where: str, problems: list[str]) -> Control | None:
    if not isinstance(entry, dict):
        problems.append(f"{where}: a control must be a mapping with id and title")
        return None
    cid = entry.get("id")
    if not isinstance(cid, str) or not cid.strip():
        # YAML reads an unquoted 1.10 as the number 1.1: a control id is always quoted text
        problems.append(f'{where}: `id` must be the control\'s id as quoted text, e.g. "1.1"')
        return None
    where = f"{where.rsplit(':', 1)[0]}: control {cid}"
    start = len(problems)
    problems.extend(
        f"{where}: unknown key {k!r} (valid: {', '.join(sorted(_CONTROL_KEYS))})"
        for k in entry
        if k not in _CONTROL_KEYS
    )
    title = entry.get("title")
    if not isinstance(title, str) or not title.strip():
        problems.append(f"{where}: `title` must cite the control's title")
    names = entry.get("filters") or []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        problems.append(f"{where}: `filters` must be a list of filter names")
        names = []
    mappable = set(_mappable())
    problems.extend(
        f"{where}: unknown filter {n!r}"
        + (" (map the filters inside it)" if n in _COMBINATORS else "")
        for n in names
        if n not in mappable
    )
    process = entry.get("process")
    if process is not None and process not in PROCESSES:
        problems.append(f"{where}: unknown process {process!r} (valid: {', '.join(PROCESSES)})")
    if not names and process is None:
        problems.append(f"{where}: needs `filters`, `process` or both (nothing to assess)")
    age = entry.get("max_age_days")
    if age is not None and (isinstance(age, bool) or not isinstance(age, int) or age < 1):
        problems.append(f"{where}: `max_age_days` must be a whole number of days, at least 1")
    if age is not None and process != "scan":
        problems.append(f"{where}: `max_age_days` applies to `process: scan` only")
    if len(problems) > start:
        return None
    return Control(
        id=str(cid),
        title=title.strip(),
        text=str(entry.get("text") or "").strip(),
        filters=tuple(names),
        process=process,
        max_age_days=age,
    )

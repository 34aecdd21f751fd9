"""Loading a policy file: YAML with line numbers → pydantic validation → built rules.

Every problem in the file is reported at once in one ``PolicyError`` (one line each, as
``file:line: dotted.path: message``). Loading is pure: nothing here touches a hypervisor, so
callers validate the whole policy before connecting anywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vmwarden.errors import PolicyError
from vmwarden.model import Severity
from vmwarden.policy.build import Builder
from vmwarden.policy.problems import Problems, describe
from vmwarden.policy.rules import Gate, Policy, Rule
from vmwarden.policy.schema import NOTIFIERS, RESOURCES, PolicyDoc, StrictModel
from vmwarden.policy.source import read_yaml


def load_policy(path: str | Path) -> Policy:
    """Read and validate the policy file at ``path``; ``vulns:`` is relative to its folder."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(
            f"{path}: cannot read policy: {exc.strerror or exc}",
            hint="check the path given with -p/--policy",
        ) from None
    except UnicodeDecodeError as exc:
        raise PolicyError(f"{path}: policy is not UTF-8 text ({exc.reason})") from None
    return parse_policy(text, source=str(path), base_dir=path.parent)


def parse_policy(text: str, source: str = "<string>", *, base_dir: Path | None = None) -> Policy:
    """Validate policy YAML ``text``; ``source`` names it in error messages."""
    located = read_yaml(text, source)
    problems = Problems(source, located)
    data = located.data
    if not isinstance(data, dict):
        if data is None:
            problems.add((), "the policy is empty; start with 'version: 1' and 'rules:'")
        else:
            problems.add(
                (), f"the policy must be a mapping (version, rules, ...), got {describe(data)}"
            )
        problems.raise_if_any()
    doc: PolicyDoc | None = problems.validate(PolicyDoc, data, ())
    _cross_checks(data, problems)
    notify = _notifiers(data.get("notify"), problems)
    zones = data.get("zones")
    zone_names = frozenset(zones) if isinstance(zones, dict) else frozenset()
    builder = Builder(
        problems, zone_names, frozenset(type(n).model_fields["type"].default for n in notify)
    )
    sections = {key for key, value in data.items() if value is not None}
    rules = _rules(data.get("rules"), builder, sections)
    gate = _gate(data.get("gate"), builder)
    problems.raise_if_any()
    complete = (
        doc is not None
        and rules is not None
        and gate is not None
        and len(rules) == len(doc.rules)
        and None not in gate.deny + gate.hold
    )
    if not complete or doc is None or rules is None or gate is None:  # pragma: no cover
        raise PolicyError(f"{source}: policy rejected without a reported reason (a bug)")
    vulns = None
    if doc.vulns is not None:
        vulns = Path(doc.vulns)
        if base_dir is not None and not vulns.is_absolute():
            vulns = base_dir / vulns
    return Policy(
        version=doc.version,
        source=source,
        rules=rules,
        templates=tuple(doc.templates),
        zones=dict(doc.zones),
        quarantine=doc.quarantine,
        gate=gate,
        notify=tuple(notify),  # type: ignore[arg-type]
        vulns=vulns,
    )


def _cross_checks(data: dict[str, Any], problems: Problems) -> None:
    """What no single model can see: duplicates across entries."""
    _unique_digests(data.get("templates"), problems)
    _one_zone_per_classification(data.get("zones"), problems)
    _unique_rule_names(data.get("rules"), problems)


def _unique_digests(templates: Any, problems: Problems) -> None:
    first: dict[str, int] = {}
    for i, entry in enumerate(templates if isinstance(templates, list) else ()):
        digest = entry.get("digest") if isinstance(entry, dict) else None
        if not isinstance(digest, str):
            continue
        digest = digest.lower()
        if digest in first:
            problems.add(
                ("templates", i, "digest"),
                f"digest already approved by templates[{first[digest]}]",
            )
        first.setdefault(digest, i)


def _one_zone_per_classification(zones: Any, problems: Problems) -> None:
    owner: dict[str, str] = {}
    for name, zone in (zones if isinstance(zones, dict) else {}).items():
        classes = zone.get("classifications") if isinstance(zone, dict) else None
        for j, cls in enumerate(classes if isinstance(classes, list) else ()):
            if not isinstance(cls, str):
                continue
            if owner.setdefault(cls, name) != name:
                problems.add(
                    ("zones", name, "classifications", j),
                    f"classification {cls!r} is already in zone {owner[cls]!r}; "
                    "a classification belongs to one zone",
                )


def _unique_rule_names(rules: Any, problems: Problems) -> None:
    first: dict[str, int] = {}
    for i, rule in enumerate(rules if isinstance(rules, list) else ()):
        name = rule.get("name") if isinstance(rule, dict) else None
        if not isinstance(name, str):
            continue
        if name in first:
            line = problems.located.line_of(("rules", first[name], "name"))
            problems.add(
                ("rules", i, "name"),
                f"duplicate rule name {name!r} (first at rules[{first[name]}], line {line})",
            )
        first.setdefault(name, i)


def _notifiers(raw: Any, problems: Problems) -> list[StrictModel]:
    if not isinstance(raw, list):
        return []  # a wrong type is reported by PolicyDoc
    result: list[StrictModel] = []
    for i, entry in enumerate(raw):
        path = ("notify", i)
        kind = entry.get("type") if isinstance(entry, dict) else None
        if not isinstance(entry, dict):
            problems.add(path, f"expected a mapping with 'type', got {describe(entry)}")
        elif not isinstance(kind, str) or kind not in NOTIFIERS:
            valid = ", ".join(sorted(NOTIFIERS))
            what = "missing 'type'" if kind is None else f"unknown notifier type {kind!r}"
            problems.add(path, f"{what} (valid: {valid})")
        else:
            model = problems.validate(NOTIFIERS[kind], entry, path)
            if model is not None:
                result.append(model)
    return result


def _rules(raw: Any, builder: Builder, sections: set[str]) -> tuple[Rule, ...] | None:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        return None
    rules: list[Rule] = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict):
            continue  # reported by PolicyDoc
        resource = entry.get("resource") if entry.get("resource") in RESOURCES else None
        path = ("rules", i)
        flt = None
        if isinstance(entry.get("filters"), list) and entry["filters"]:
            flt = builder.rule_filter(entry["filters"], (*path, "filters"), resource)
        acts = entry.get("actions", [])
        specs = (
            builder.actions(acts, (*path, "actions"), resource, sections)
            if isinstance(acts, list)
            else None
        )
        severity = entry.get("severity")
        name = entry.get("name")
        if flt is None or specs is None or resource is None or not isinstance(name, str):
            continue
        if not isinstance(severity, str) or severity.upper() not in Severity.__members__:
            continue
        rules.append(
            Rule(
                name=name,
                resource=resource,
                severity=Severity.parse(severity),
                filter=flt,
                actions=specs,
                description=entry.get("description"),
                remediation=entry.get("remediation"),
            )
        )
    return tuple(rules)


def _gate(raw: Any, builder: Builder) -> Gate | None:
    if raw is None:
        return Gate()
    if not isinstance(raw, dict):
        return None
    lists: dict[str, tuple[Any, ...]] = {}
    for key in ("deny", "hold"):
        items = raw.get(key, [])
        items = items if isinstance(items, list) else []
        built = [builder.filter(item, ("gate", key, i), "vm") for i, item in enumerate(items)]
        lists[key] = tuple(built)
    unreachable = raw.get("unreachable", "allow")
    return Gate(deny=lists["deny"], hold=lists["hold"], unreachable=str(unreachable))

"""Builds filter trees and action specs from the raw YAML, through the registries.

Each entry is checked against its registry class and its ``Params`` model; problems are
recorded with the entry's own path (so its own line), and building goes on so that one run
reports every mistake in the file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vmwarden.policy.actions import actions
from vmwarden.policy.filters.base import CheckEnv, Filter, filters
from vmwarden.policy.filters.combinators import And, Combinator, ListParams
from vmwarden.policy.problems import describe
from vmwarden.policy.rules import ActionSpec

if TYPE_CHECKING:
    from vmwarden.policy.problems import Problems
    from vmwarden.policy.source import PathT

SHORTHANDS = ("and", "or", "not")


class Builder:
    """Turns raw filter/action entries into objects; ``None`` where an entry is invalid."""

    def __init__(
        self, problems: Problems, zones: frozenset[str], notifiers: frozenset[str]
    ) -> None:
        self.problems = problems
        self.zones = zones
        self.notifiers = notifiers

    def _split(self, spec: Any, path: PathT, kind: str) -> tuple[str, dict[str, Any]] | None:
        """``name`` or ``{type: name, **params}`` → (name, params)."""
        if isinstance(spec, str):
            return spec, {}
        if isinstance(spec, dict) and "type" in spec:
            name = spec["type"]
            if not isinstance(name, str):
                self.problems.add((*path, "type"), f"expected a {kind} name, got {describe(name)}")
                return None
            return name, {k: v for k, v in spec.items() if k != "type"}
        if isinstance(spec, dict):
            keys = ", ".join(repr(k) for k in spec) or "none"
            hint = " (or a single and/or/not key)" if kind == "filter" else ""
            self.problems.add(path, f"{kind} mapping needs 'type'{hint}; got keys {keys}")
            return None
        self.problems.add(path, f"expected a {kind} name or mapping, got {describe(spec)}")
        return None

    # --- filters -------------------------------------------------------------------------

    def rule_filter(self, items: list[Any], path: PathT, resource: str | None) -> Filter | None:
        """A rule's ``filters:`` list: an implicit ``and`` (unwrapped when it has one entry)."""
        if not items:
            self.problems.add(path, "needs at least one filter, got an empty list")
            return None
        children = [self.filter(item, (*path, i), resource) for i, item in enumerate(items)]
        if any(child is None for child in children):
            return None
        built = [c for c in children if c is not None]
        return built[0] if len(built) == 1 else And(ListParams(filters=items), built)

    def filter(self, spec: Any, path: PathT, resource: str | None) -> Filter | None:
        if isinstance(spec, dict) and "type" not in spec and len(spec) == 1:
            key = next(iter(spec))
            if key in SHORTHANDS:
                return self._combinator(key, spec[key], (*path, key), path, resource)
        split = self._split(spec, path, "filter")
        if split is None:
            return None
        name, params = split
        cls = filters.get(name)
        if cls is None:
            valid = ", ".join(filters.names())
            self.problems.add(path, f"unknown filter {name!r} (valid: {valid})")
            return None
        if resource is not None and resource not in cls.resources:
            self.problems.add(
                path,
                f"filter {name!r} does not apply to resource {resource!r} "
                f"(it judges: {', '.join(cls.resources)})",
            )
            return None
        model = self.problems.validate(cls.Params, params, path, extra_keys=("type",))
        if model is None:
            return None
        if issubclass(cls, Combinator):
            key = cls.children_key
            return self._combinator(name, params[key], (*path, key), path, resource)
        built = cls(model)
        for sub, message in built.check(self._env(resource)):
            self.problems.add((*path, *sub), message)
        return built

    def _combinator(
        self, name: str, raw: Any, raw_path: PathT, path: PathT, resource: str | None
    ) -> Filter | None:
        cls = filters.get(name)
        if cls is None or not issubclass(cls, Combinator):  # pragma: no cover - registry bug
            raise LookupError(f"combinator {name!r} is not registered")
        if name == "not":
            child = (
                self.rule_filter(raw, raw_path, resource)
                if isinstance(raw, list)
                else self.filter(raw, raw_path, resource)
            )
            return None if child is None else cls(cls.Params.model_construct(filter=raw), [child])
        if not isinstance(raw, list) or not raw:
            got = "an empty list" if raw == [] else describe(raw)
            self.problems.add(raw_path, f"'{name}' needs a list of filters, got {got}")
            return None
        children = [self.filter(item, (*raw_path, i), resource) for i, item in enumerate(raw)]
        if any(child is None for child in children):
            return None
        return cls(ListParams(filters=raw), [c for c in children if c is not None])

    def _env(self, resource: str | None) -> CheckEnv:
        return CheckEnv(resource=resource or "", zones=self.zones, notifiers=self.notifiers)

    # --- actions -------------------------------------------------------------------------

    def actions(
        self, items: list[Any], path: PathT, resource: str | None, sections: set[str]
    ) -> tuple[ActionSpec, ...] | None:
        specs: list[ActionSpec] = []
        seen: set[str] = set()
        ok = True
        for i, item in enumerate(items):
            spec = self.action(item, (*path, i), resource, sections)
            if spec is None:
                ok = False
            elif spec.name in seen:
                self.problems.add((*path, i), f"action {spec.name!r} is listed twice")
                ok = False
            else:
                seen.add(spec.name)
                specs.append(spec)
        return tuple(specs) if ok else None

    def action(
        self, spec: Any, path: PathT, resource: str | None, sections: set[str]
    ) -> ActionSpec | None:
        split = self._split(spec, path, "action")
        if split is None:
            return None
        name, params = split
        cls = actions.get(name)
        if cls is None:
            valid = ", ".join(actions.names())
            self.problems.add(path, f"unknown action {name!r} (valid: {valid})")
            return None
        if resource is not None and resource not in cls.resources:
            self.problems.add(
                path,
                f"action {name!r} cannot act on resource {resource!r} "
                f"(it acts on: {', '.join(cls.resources)})",
            )
            return None
        model = self.problems.validate(cls.Params, params, path, extra_keys=("type",))
        if model is None:
            return None
        if cls.needs is not None and cls.needs not in sections:
            self.problems.add(path, f"action {name!r} needs a top-level '{cls.needs}:' section")
            return None
        for sub, message in cls.check(model, self._env(resource)):
            self.problems.add((*path, *sub), message)
        return ActionSpec(name, model)

"""Evaluating OVAL definitions: criteria, tests (existence, check, states), objects (entities,
filters, sets) and variables. Collecting items per object type is in :mod:`oval_collect`.

Every value is a string (OVAL's datatypes apply at comparison time, :mod:`oval_ops`); an item
is ``{entity name: [values]}``. Objects and variables are computed once per evaluation and
shared by all the definitions that reference them.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vmwarden.inspect.guest.files import GuestFiles, GuestReadError
from vmwarden.scap import oval_collect
from vmwarden.scap.oval_doc import OvalDocument, is_nil, local
from vmwarden.scap.oval_ops import (
    NE,
    CompareError,
    E,
    T,
    U,
    check,
    combine,
    compare,
    glob_to_regex,
    negate,
    regex,
)

Item = dict[str, list[str]]
_NOT_ENTITIES = {"behaviors", "filter", "set", "notes", "signature"}


@dataclass(frozen=True)
class DefinitionResult:
    """One definition's result and, when it is not a plain true/false, why."""

    result: str
    reason: str = ""
    tests: dict[str, str] = field(default_factory=dict)  # test id -> its result


@dataclass
class Collected:
    """An object's items and its OVAL flag (complete, does not exist, error, not collected)."""

    items: list[Item]
    flag: str = "complete"
    reason: str = ""


class VarError(Exception):
    """A variable has no value (an external one not given, a component that failed)."""


@dataclass
class Entity:
    """An object's or state's entity: its values (literal or from a variable) and how to compare."""

    name: str
    values: list[str]
    operation: str
    datatype: str
    nil: bool
    var_check: str
    entity_check: str


class Evaluator:
    """Evaluates one document over one guest filesystem, caching objects and variables."""

    def __init__(
        self, doc: OvalDocument, files: GuestFiles, external_vars: Mapping[str, list[str]]
    ) -> None:
        self.doc = doc
        self.files = files
        self.external = {k: [str(v) for v in vs] for k, vs in external_vars.items()}
        self._objects: dict[str, Collected] = {}
        self._vars: dict[str, list[str] | VarError] = {}
        self._tests: dict[str, tuple[str, str]] = {}
        self._defs: dict[str, DefinitionResult] = {}
        self._active: set[str] = set()
        self._state_ents: dict[str, list[Entity]] = {}
        self.context = oval_collect.Context(files)

    # --- definitions and criteria -------------------------------------------------------
    def definition(self, def_id: str) -> DefinitionResult:
        if def_id in self._defs:
            return self._defs[def_id]
        el = self.doc.definitions.get(def_id)
        if el is None:
            return DefinitionResult(E, f"no definition {def_id}")
        if def_id in self._active:
            return DefinitionResult(E, f"{def_id} extends itself")
        self._active.add(def_id)
        try:
            crit = next((c for c in el if local(c.tag) == "criteria"), None)
            tests: dict[str, str] = {}
            reasons: list[str] = []
            if crit is None:
                res = DefinitionResult(U, "the definition has no criteria")
            else:
                r = self._criteria(crit, tests, reasons)
                res = DefinitionResult(
                    r, "; ".join(dict.fromkeys(reasons)) if r != T else "", tests
                )
        finally:
            self._active.discard(def_id)
        self._defs[def_id] = res
        return res

    def _criteria(self, el: Any, tests: dict[str, str], reasons: list[str]) -> str:
        results: list[str] = []
        for c in el:
            kind = local(c.tag)
            if kind == "criteria":
                results.append(self._criteria(c, tests, reasons))
            elif kind == "criterion":
                tid = c.get("test_ref", "")
                r, why = self.test(tid)
                tests[tid] = r
                if why and r not in (T, "false"):
                    reasons.append(f"{tid}: {why}")
                results.append(negate(r) if c.get("negate") == "true" else r)
            elif kind == "extend_definition":
                sub = self.definition(c.get("definition_ref", ""))
                tests.update(sub.tests)
                if sub.reason and sub.result not in (T, "false"):
                    reasons.append(sub.reason)
                results.append(negate(sub.result) if c.get("negate") == "true" else sub.result)
        try:
            r = combine(el.get("operator", "AND"), results)
        except CompareError as exc:
            reasons.append(str(exc))
            r = E
        return negate(r) if el.get("negate") == "true" else r

    # --- tests --------------------------------------------------------------------------
    def test(self, test_id: str) -> tuple[str, str]:
        """(result, reason) of a test."""
        if test_id not in self._tests:
            el = self.doc.tests.get(test_id)
            if el is None:
                self._tests[test_id] = (E, f"no test {test_id}")
            else:
                try:
                    self._tests[test_id] = self._test(el)
                except (CompareError, VarError) as exc:
                    self._tests[test_id] = (E, str(exc))
        return self._tests[test_id]

    def _test(self, el: Any) -> tuple[str, str]:
        obj = next((c for c in el if local(c.tag) == "object"), None)
        if obj is None:
            return E, "the test names no object"
        coll = self.collect(obj.get("object_ref", ""))
        if coll.flag == "not collected":
            return NE, coll.reason
        if coll.flag == "error":
            return E, coll.reason
        n = len(coll.items)
        existence = el.get("check_existence", "at_least_one_exists")
        ex = {
            "all_exist": n > 0,
            "any_exist": True,
            "at_least_one_exists": n > 0,
            "none_exist": n == 0,
            "only_one_exists": n == 1,
        }.get(existence)
        if ex is None:
            return E, f"check_existence {existence!r} is unknown"
        if not ex:
            return "false", ""
        states = [c.get("state_ref", "") for c in el if local(c.tag) == "state"]
        if not states or n == 0:
            return T, ""
        op = el.get("state_operator", "AND")
        per_item = [combine(op, [self.state_matches(s, it) for s in states]) for it in coll.items]
        return check(el.get("check", "all"), per_item), ""

    # --- states -------------------------------------------------------------------------
    def state_matches(self, state_id: str, item: Item) -> str:
        st = self.doc.states.get(state_id)
        if st is None:
            raise CompareError(f"no state {state_id}")
        if state_id not in self._state_ents:  # parsed once: filters run it on every file
            self._state_ents[state_id] = [
                self.entity(e)
                for e in st
                if isinstance(e.tag, str) and local(e.tag) not in _NOT_ENTITIES
            ]
        results = []
        for ent in self._state_ents[state_id]:
            values = item.get(ent.name)
            if values is None:
                results.append(E)
                continue
            per_value = []
            for v in values:
                try:
                    per_value.append(
                        check(
                            ent.var_check,
                            [
                                T if compare(v, sv, ent.datatype, ent.operation) else "false"
                                for sv in ent.values
                            ],
                        )
                    )
                except CompareError:
                    per_value.append(E)
            results.append(check(ent.entity_check, per_value))
        return combine(st.get("operator", "AND"), results)

    def entity(self, el: Any) -> Entity:
        ref = el.get("var_ref")
        if ref:
            values = self.variable(ref)
            if not values:
                raise VarError(f"variable {ref} has no value")
        else:
            values = [el.text or ""]
        return Entity(
            name=local(el.tag),
            values=values,
            operation=el.get("operation", "equals"),
            datatype=el.get("datatype", "string"),
            nil=is_nil(el),
            var_check=el.get("var_check", "all"),
            entity_check=el.get("entity_check", "all"),
        )

    # --- objects ------------------------------------------------------------------------
    def collect(self, object_id: str) -> Collected:
        if object_id in self._objects:
            return self._objects[object_id]
        el = self.doc.objects.get(object_id)
        if el is None:
            return Collected([], "error", f"no object {object_id}")
        self._objects[object_id] = Collected([], "error", f"{object_id} refers to itself")
        try:
            res = self._collect(el)
        except GuestReadError as exc:
            res = Collected([], "error", str(exc))
        except (CompareError, VarError) as exc:
            res = Collected([], "error", str(exc))
        self._objects[object_id] = res
        return res

    def _collect(self, el: Any) -> Collected:
        set_el = next((c for c in el if local(c.tag) == "set"), None)
        if set_el is not None:
            return self._set(set_el)
        kind = local(el.tag)
        collector = oval_collect.collector(kind)
        if collector is None:
            return Collected([], "not collected", f"{kind} is not evaluated offline")
        ents: dict[str, Entity] = {}
        for c in el:
            if isinstance(c.tag, str) and local(c.tag) not in _NOT_ENTITIES:
                try:
                    ents[local(c.tag)] = self.entity(c)
                except VarError:
                    return Collected([], "does not exist", "")
        behaviors = next((dict(c.attrib) for c in el if local(c.tag) == "behaviors"), {})
        try:
            out = collector(self.context, ents, behaviors, self)
        except oval_collect.NotCollected as exc:
            return Collected([], "not collected", str(exc))
        items = self._filter(el, out)
        return Collected(items, "complete" if items else "does not exist")

    def _filter(self, el: Any, items: list[Item]) -> list[Item]:
        for f in el:
            if local(f.tag) != "filter":
                continue
            include = f.get("action", "exclude") == "include"
            sid = (f.text or "").strip()
            items = [it for it in items if (self.state_matches(sid, it) == T) == include]
        return items

    def _set(self, el: Any) -> Collected:
        parts: list[Collected] = []
        for c in el:
            kind = local(c.tag)
            if kind == "object_reference":
                parts.append(self.collect((c.text or "").strip()))
            elif kind == "set":
                parts.append(self._set(c))
        for p in parts:
            if p.flag in ("error", "not collected"):
                return p
        keyed = [{_key(it): it for it in p.items} for p in parts]
        op = el.get("set_operator", "UNION")
        if not keyed:
            merged: dict[Any, Item] = {}
        elif op == "UNION":
            merged = {k: v for d in keyed for k, v in d.items()}
        elif op == "INTERSECTION":
            merged = {k: v for k, v in keyed[0].items() if all(k in d for d in keyed[1:])}
        elif op == "COMPLEMENT":
            merged = {k: v for k, v in keyed[0].items() if all(k not in d for d in keyed[1:])}
        else:
            return Collected([], "error", f"set_operator {op!r} is unknown")
        items = self._filter(el, list(merged.values()))
        return Collected(items, "complete" if items else "does not exist")

    # --- variables ----------------------------------------------------------------------
    def variable(self, var_id: str) -> list[str]:
        cached = self._vars.get(var_id)
        if isinstance(cached, VarError):
            raise cached
        if cached is not None:
            return cached
        el = self.doc.variables.get(var_id)
        try:
            if el is None:
                raise VarError(f"no variable {var_id}")
            self._vars[var_id] = VarError(f"variable {var_id} refers to itself")
            kind = local(el.tag)
            if kind == "external_variable":
                if var_id not in self.external:
                    raise VarError(f"external variable {var_id} was not given")
                values = self.external[var_id]
            elif kind == "constant_variable":
                values = self.doc.constant_values(var_id, el)
            elif kind == "local_variable":
                comp = next((c for c in el if isinstance(c.tag, str)), None)
                values = [] if comp is None else self._component(comp)
            else:
                raise VarError(f"{kind} is not supported")
        except VarError as exc:
            self._vars[var_id] = exc
            raise
        self._vars[var_id] = values
        return values

    def _component(self, el: Any) -> list[str]:
        kind = local(el.tag)
        subs = [c for c in el if isinstance(c.tag, str)]
        if kind == "literal_component":
            return [el.text or ""]
        if kind == "variable_component":
            return self.variable(el.get("var_ref", ""))
        if kind == "object_component":
            coll = self.collect(el.get("object_ref", ""))
            if coll.flag in ("error", "not collected"):
                raise VarError(coll.reason)
            name = el.get("item_field", "")
            return [v for it in coll.items for v in it.get(name, [])]
        args = [self._component(c) for c in subs]
        if kind == "concat":
            return ["".join(p) for p in itertools.product(*args)]
        flat = [v for a in args for v in a]
        if kind == "regex_capture":
            pat = regex(el.get("pattern", ""), re.MULTILINE)
            out = []
            for v in flat:
                m = pat.search(v)
                if m is not None and m.groups():
                    out.append(m.group(1) or "")
            return out
        if kind == "substring":
            start = max(int(el.get("substring_start", "1")) - 1, 0)
            length = int(el.get("substring_length", "-1"))
            return [v[start:] if length < 0 else v[start : start + length] for v in flat]
        if kind == "arithmetic":
            add = el.get("arithmetic_operation") == "add"
            out = []
            for combo in itertools.product(*args):
                nums = [float(x) if "." in x else int(x) for x in combo]
                acc = sum(nums) if add else _product(nums)
                out.append(str(acc))
            return out
        if kind == "split":
            return [p for v in flat for p in v.split(el.get("delimiter", ""))]
        if kind == "unique":
            return list(dict.fromkeys(flat))
        if kind == "count":
            return [str(len(flat))]
        if kind == "glob_to_regex":
            return [glob_to_regex(v, el.get("glob_noescape") == "true") for v in flat]
        if kind == "escape_regex":
            return [re.sub(r"([.^$*+?()\[\]{}|\\-])", r"\\\1", v) for v in flat]
        if kind == "begin":
            ch = el.get("character", "")
            return [v if v.startswith(ch) else ch + v for v in flat]
        if kind == "end":
            ch = el.get("character", "")
            return [v if v.endswith(ch) else v + ch for v in flat]
        raise VarError(f"variable function {kind} is not supported")


def _product(nums: list[float]) -> float:
    acc: float = 1
    for n in nums:
        acc *= n
    return acc


def _key(item: Item) -> tuple[tuple[str, tuple[str, ...]], ...]:
    return tuple(sorted((k, tuple(v)) for k, v in item.items()))

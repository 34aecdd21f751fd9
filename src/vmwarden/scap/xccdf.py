"""XCCDF evaluation on top of OVAL results: profiles, applicability, rule results, score.

The XCCDF layer never looks at a disk. It asks an *OVAL runner* for definition results
("true", "false", "unknown", "error", "not evaluated", "not applicable" by definition
id) and turns them into rule results and a score the way OpenSCAP does, so that a
vmwarden score and an ``oscap xccdf eval`` score of the same filesystem are the same
number. The runner is vmwarden's offline OVAL evaluator in production; in the tests it
is OpenSCAP's own OVAL results, which pins this layer to the reference on its own.

Semantics (OpenSCAP 1.3, XCCDF 1.2 / NISTIR 7275r4):

* selection: an item's ``selected`` default, then the profile's ``select``s (by id or
  cluster-id, parents' profiles first); a rule counts only when every ancestor group is
  selected too; unselected rules are ``notselected``.
* values: a Value's default, the profile's ``refine-value`` selector, then ``set-value``;
  ``check-export`` hands them to OVAL as external variables.
* applicability: an item with platforms applies when any of them applies, and only when
  its groups and the benchmark apply. ``ignore_platform`` skips the *benchmark's*
  platforms (the OS release the content was written for), so Debian 11 content can be
  judged on a Debian 12 disk while rule-level conditions ("sudo is installed", "a
  machine, not a container") still decide.
* checks: the first OVAL check (matching the refine-rule selector); none is
  ``notchecked`` (OCIL questionnaires are for people). ``negate`` swaps pass and fail.
* a rule with ``role="unscored"`` that passed or failed is ``informational``, as in
  OpenSCAP; ``role="unchecked"`` is ``notchecked``.
* score: ``urn:xccdf:scoring:default``, computed exactly as OpenSCAP's
  ``xccdf_item_get_default_score``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from vmwarden.scap.xccdf_content import (
    OVAL_DEFS,
    OVAL_SYSTEM,
    Benchmark,
    Check,
    ContentError,
    Item,
    LogicalTest,
    Profile,
)

# href, definition ids, external variables (OVAL variable id -> values) -> results by id
OvalRunner = Callable[[str, frozenset[str], Mapping[str, list[str]]], Mapping[str, str]]

RESULTS = (
    "pass",
    "fail",
    "error",
    "unknown",
    "notapplicable",
    "notchecked",
    "notselected",
    "informational",
)
_UNSCORED = frozenset({"notselected", "notapplicable", "informational", "notchecked"})
_NOT_EVALUATED = frozenset({"not evaluated", "not applicable"})


@dataclass(frozen=True)
class RuleResult:
    """One rule's verdict and where it came from (definition ids and their OVAL results)."""

    rule_id: str
    result: str
    title: str = ""
    severity: str = "unknown"
    weight: float = 1.0
    role: str = "full"
    definitions: dict[str, str] = field(default_factory=dict)
    message: str = ""


@dataclass
class BenchmarkResult:
    """A benchmark evaluation: per-rule results, per-definition OVAL results, the score."""

    benchmark_id: str
    profile_id: str
    score: float
    rules: list[RuleResult]
    definitions: dict[str, str]  # OVAL definition id -> OVAL result
    platform_applicable: bool
    ignored_platforms: tuple[str, ...] = ()

    def counts(self) -> dict[str, int]:
        """Rules by result (the summary line of a report)."""
        out = dict.fromkeys(RESULTS, 0)
        for rule in self.rules:
            out[rule.result] = out.get(rule.result, 0) + 1
        return out

    def failed(self) -> list[str]:
        """Rules that failed, in benchmark order (a policy's evidence)."""
        return [r.rule_id for r in self.rules if r.result == "fail"]


@dataclass
class Tailoring:
    """A profile resolved against the benchmark: what is selected, which values, refinements."""

    selected: dict[str, bool]
    values: dict[str, str]
    refinements: dict[str, dict[str, str]]


def _chain(bench: Benchmark, profile_id: str) -> list[Profile]:
    chain: list[Profile] = []
    seen: set[str] = set()
    current: str = profile_id
    while current:
        if current in seen:
            raise ContentError(f"profile {current!r} extends itself (a cycle)")
        seen.add(current)
        prof = bench.profiles.get(current)
        if prof is None:
            known = ", ".join(sorted(bench.profiles)) or "none"
            raise ContentError(f"no profile {current!r} in {bench.id} (profiles: {known})")
        chain.append(prof)
        current = prof.extends
    return list(reversed(chain))


def resolve_profile(profiles: Mapping[str, object], given: str | None) -> str | None:
    """A profile named in full or by the part after ``_profile_`` (``anssi_np_nt28_high``);
    an unknown name is returned as given, for :func:`tailor` to refuse with the list."""
    if given is None or given in profiles:
        return given
    short = [p for p in profiles if p.rsplit("_profile_", 1)[-1] == given]
    return short[0] if len(short) == 1 else given


def tailor(bench: Benchmark, profile_id: str | None) -> Tailoring:
    """The selection, values and rule refinements a profile (or none) gives."""
    walked = bench.walk()
    selected = {item.id: item.selected for item, _ in walked}
    clusters: dict[str, list[str]] = {}
    for item, _ in walked:
        if item.cluster_id:
            clusters.setdefault(item.cluster_id, []).append(item.id)
    for value in bench.values.values():
        if value.cluster_id:
            clusters.setdefault(value.cluster_id, []).append(value.id)
    values = {
        v.id: v.values.get("", next(iter(v.values.values()), "")) for v in bench.values.values()
    }
    refinements: dict[str, dict[str, str]] = {}
    for prof in _chain(bench, profile_id) if profile_id else []:
        for idref, on in prof.selects:
            for target in [idref] if idref in selected else clusters.get(idref, []):
                if target in selected:
                    selected[target] = on
        for idref, selector in prof.refine_values:
            for target in [idref] if idref in bench.values else clusters.get(idref, []):
                value = bench.values.get(target)
                if value is not None and selector in value.values:
                    values[target] = value.values[selector]
        for idref, text in prof.set_values:
            for target in [idref] if idref in bench.values else clusters.get(idref, []):
                if target in values:
                    values[target] = text
        for idref, attrs in prof.refine_rules:
            for target in [idref] if idref in selected else clusters.get(idref, []):
                refinements.setdefault(target, {}).update(attrs)
    return Tailoring(selected=selected, values=values, refinements=refinements)


def _choose_check(item: Item, selector: str) -> Check | None:
    oval = [c for c in item.checks if c.system == OVAL_SYSTEM and not c.complex]
    chosen = [c for c in oval if c.selector == selector] or [c for c in oval if not c.selector]
    return chosen[0] if chosen else None


def _definition_classes(bench: Benchmark, href: str) -> dict[str, str]:
    root = bench.oval.get(href)
    if root is None:
        return {}
    return {
        d.get("id", ""): d.get("class", "compliance")
        for d in root.iter(f"{{{OVAL_DEFS}}}definition")
    }


def _map(oval_result: str | None, klass: str, negate: bool) -> str:
    """OVAL definition result -> XCCDF rule result (OpenSCAP's mapping)."""
    if oval_result in ("true", "false"):
        good = (oval_result == "true") == (klass in ("compliance", "inventory"))
        return "pass" if good != negate else "fail"
    return {
        "unknown": "unknown",
        "error": "error",
        "not evaluated": "notchecked",
        "not applicable": "notapplicable",
    }.get(oval_result or "", "error")


def _cpe_applies(bench: Benchmark, name: str, cpe_results: Mapping[tuple[str, str], str]) -> bool:
    if name.startswith("#"):
        test = bench.cpe_platforms.get(name)
        return test is not None and _logical(bench, test, cpe_results)
    ref = bench.cpe_names.get(name)
    return ref is not None and cpe_results.get(ref) == "true"


def _logical(
    bench: Benchmark, test: LogicalTest, cpe_results: Mapping[tuple[str, str], str]
) -> bool:
    parts = [_cpe_applies(bench, n, cpe_results) for n in test.names]
    parts += [cpe_results.get(c) == "true" for c in test.checks]
    parts += [_logical(bench, t, cpe_results) for t in test.tests]
    value = all(parts) if test.operator == "AND" else any(parts)
    return value != test.negate


def _platform_refs(bench: Benchmark, names: tuple[str, ...]) -> set[tuple[str, str]]:
    """The (href, OVAL definition) pairs deciding the given platforms."""
    out: set[tuple[str, str]] = set()

    def from_test(test: LogicalTest) -> None:
        for n in test.names:
            out.update(_platform_refs(bench, (n,)))
        out.update(test.checks)
        for t in test.tests:
            from_test(t)

    for name in names:
        if name.startswith("#"):
            if (test := bench.cpe_platforms.get(name)) is not None:
                from_test(test)
        elif (ref := bench.cpe_names.get(name)) is not None:
            out.add(ref)
    return out


def _run_by_href(
    runner: OvalRunner,
    wanted: set[tuple[str, str]],
    variables: Mapping[str, list[str]],
) -> dict[tuple[str, str], str]:
    by_href: dict[str, set[str]] = {}
    for href, def_id in wanted:
        by_href.setdefault(href, set()).add(def_id)
    out: dict[tuple[str, str], str] = {}
    for href, ids in sorted(by_href.items()):
        results = runner(href, frozenset(ids), variables)
        for def_id in ids:
            out[(href, def_id)] = results.get(def_id, "not evaluated")
    return out


def _plan(
    rule: Item, refine: Mapping[str, str], applicable: bool, tailoring: Tailoring
) -> tuple[Check | None, str, dict[str, list[str]]]:
    """How a selected rule is decided: its OVAL check, or a fixed result, and its exports."""
    if not applicable:
        return None, "notapplicable", {}
    if refine.get("role", rule.role) == "unchecked":
        return None, "notchecked", {}
    check = _choose_check(rule, refine.get("selector", ""))
    if check is None or not check.refs:
        return None, "notchecked", {}  # OCIL only: a question for a person
    if not check.refs[0][1] or check.multi_check:
        return None, "notchecked", {}  # whole-file checks: SSG never uses them
    exports = {
        var_id: [tailoring.values[value_id]]
        for value_id, var_id in check.exports
        if value_id in tailoring.values
    }
    return check, "", exports


def _weight(refine: Mapping[str, str], rule: Item) -> float:
    try:
        weight = float(refine["weight"]) if "weight" in refine else rule.weight
    except ValueError:
        raise ContentError(f"refine-rule {rule.id}: weight is not a number") from None
    if not weight >= 0.0:
        raise ContentError(f"refine-rule {rule.id}: weight is not a non-negative number")
    return weight


def evaluate(
    bench: Benchmark,
    runner: OvalRunner,
    *,
    profile_id: str | None = None,
    ignore_platform: bool = False,
) -> BenchmarkResult:
    """Evaluate the benchmark (under ``profile_id``) with ``runner``'s OVAL results."""
    tailoring = tailor(bench, profile_id)
    rules = [(item, parents) for item, parents in bench.walk() if item.kind == "rule"]
    active = [(r, p) for r, p in rules if all(tailoring.selected.get(i.id, True) for i in (*p, r))]
    bench_platforms = () if ignore_platform else bench.platforms
    platform_names = set(bench_platforms)
    for rule, parents in active:
        for i in (*parents, rule):
            platform_names.update(i.platforms)
    cpe_results = _run_by_href(runner, _platform_refs(bench, tuple(sorted(platform_names))), {})

    def applies(platforms: tuple[str, ...]) -> bool:
        return not platforms or any(_cpe_applies(bench, p, cpe_results) for p in platforms)

    bench_applies = applies(bench_platforms)
    plans: dict[str, tuple[Check | None, str]] = {}
    variables: dict[str, list[str]] = {}
    for rule, parents in active:
        applicable = bench_applies and all(applies(i.platforms) for i in (*parents, rule))
        refine = tailoring.refinements.get(rule.id, {})
        check, fixed, exports = _plan(rule, refine, applicable, tailoring)
        plans[rule.id] = (check, fixed)
        variables.update(exports)
    wanted = {c.refs[0] for c, _ in plans.values() if c is not None}
    oval_results = _run_by_href(runner, wanted, variables)
    classes: dict[str, dict[str, str]] = {}
    results: list[RuleResult] = []
    for rule, _parents in rules:
        refine = tailoring.refinements.get(rule.id, {})
        base = RuleResult(
            rule_id=rule.id,
            result="notselected",
            title=rule.title,
            severity=refine.get("severity", rule.severity),
            weight=_weight(refine, rule),
            role=refine.get("role", rule.role),
        )
        check, fixed = plans.get(rule.id, (None, "notselected"))
        if check is None:
            results.append(replace(base, result=fixed))
            continue
        href, def_id = check.refs[0]
        klass = classes.setdefault(href, _definition_classes(bench, href)).get(def_id)
        found = oval_results.get((href, def_id), "not evaluated")
        if klass is None:
            found, message = "error", f"definition {def_id} is not in {href}"
        else:
            message = ""
        result = _map(found, klass or "compliance", check.negate)
        if base.role == "unscored" and result in ("pass", "fail"):
            result = "informational"  # checked for the record, not for compliance (oscap)
        results.append(replace(base, result=result, definitions={def_id: found}, message=message))
    return BenchmarkResult(
        benchmark_id=bench.id,
        profile_id=profile_id or "",
        score=default_score(bench, {r.rule_id: r for r in results}),
        rules=results,
        definitions={d: r for (_, d), r in sorted(oval_results.items())},
        platform_applicable=bench_applies,
        ignored_platforms=bench.platforms if ignore_platform else (),
    )


def default_score(bench: Benchmark, results: Mapping[str, RuleResult]) -> float:
    """``urn:xccdf:scoring:default`` as OpenSCAP computes it (NISTIR 7275r4, table 40).

    A scored rule counts 100 (pass/fixed) or 0; a group is the weighted mean of its
    counted children; groups with nothing counted drop out. Weights are the items' own:
    OpenSCAP reports a refine-rule's weight in the rule result but scores with the
    benchmark's (``xccdf_item_get_weight``), and vmwarden's score is to be the same
    number. A refine-rule's ``role="unscored"`` does drop the rule, as there.
    """

    def score(item: Item) -> tuple[float, int] | None:  # (weighted score, count)
        if item.kind == "rule":
            res = results.get(item.id)
            if res is None or res.role == "unscored" or res.result in _UNSCORED:
                return None
            return (100.0 if res.result in ("pass", "fixed") else 0.0) * item.weight, 1
        total, _acc, count = group(item.children)
        return total * item.weight, count

    def group(children: list[Item]) -> tuple[float, float, int]:
        total = accumulator = 0.0
        count = 0
        for child in children:
            got = score(child)
            if got is None or got[1] == 0:
                continue
            total += got[0]
            count += 1
            accumulator += child.weight
        if count and accumulator:
            total /= accumulator
        return total, accumulator, count

    return round(group(bench.items)[0], 6)

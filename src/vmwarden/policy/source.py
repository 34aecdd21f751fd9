"""YAML text → plain data, plus the line of every key and item, so errors can name lines.

PyYAML's SafeLoader composes the node tree (which keeps marks); we walk it ourselves instead of
letting the constructor build dicts, so that duplicate keys are caught (PyYAML keeps the last
one silently) and each value's path maps to its line. Mapping keys stay the literal text
(``on:`` is the key ``"on"``, not ``True``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from vmwarden.errors import PolicyError

PathT = tuple[str | int, ...]
MAX_DEPTH = 64  # a policy nests a few levels; Python's recursion limit must never be the guard
MAX_NODES = 200_000  # alias bombs expand exponentially; a real policy is a few hundred nodes

_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"


@dataclass(slots=True)
class Located:
    """The document as plain data, the line of each path, and problems found while reading."""

    data: Any
    lines: dict[PathT, int] = field(default_factory=dict)
    problems: list[tuple[PathT, str, int | None]] = field(default_factory=list)

    def line_of(self, path: PathT) -> int:
        """The line of ``path``, or of its nearest ancestor the YAML spelled out."""
        while path and path not in self.lines:
            path = path[:-1]
        return self.lines.get(path, 1)


def read_yaml(text: str, source: str) -> Located:
    """Parse ``text``; malformed YAML raises ``PolicyError`` with ``file:line:column``."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return Located(data=None, lines={(): 1})
        located = Located(data=None)
        walker = _Walker(loader, located)
        located.data = walker.walk(node, ())
        return located
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = exc.problem or exc.context or "malformed YAML"
        raise PolicyError(
            f"{where}: could not parse YAML: {problem}",
            hint="fix the YAML syntax at that position (indentation, quotes, ':' spacing)",
        ) from None
    except yaml.YAMLError as exc:
        raise PolicyError(f"{source}: could not parse YAML: {exc}") from None
    finally:
        loader.dispose()


class _Walker:
    def __init__(self, loader: yaml.SafeLoader, located: Located) -> None:
        self.loader = loader
        self.located = located
        self.count = 0
        self.open: set[int] = set()  # collections being walked: an alias to one is a cycle

    def problem(self, path: PathT, message: str, line: int | None = None) -> None:
        self.located.problems.append((path, message, line))

    def walk(self, node: yaml.Node, path: PathT) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise PolicyError(
                f"policy has more than {MAX_NODES} YAML nodes (recursive or exploding aliases?)"
            )
        self.located.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode | yaml.SequenceNode):
            if id(node) in self.open or len(path) > MAX_DEPTH:
                self.problem(path, "recursive YAML alias or nesting too deep")
                return None
            self.open.add(id(node))
            try:
                return self.collection(node, path)
            finally:
                self.open.discard(id(node))
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as exc:
            self.problem(path, f"unsupported YAML value: {exc.problem}")
            return None

    def collection(self, node: yaml.MappingNode | yaml.SequenceNode, path: PathT) -> Any:
        if isinstance(node, yaml.MappingNode):
            if node.tag != _MAP:
                self.problem(path, f"unsupported YAML tag {node.tag!r}")
            return self.mapping(node, path)
        if node.tag != _SEQ:
            self.problem(path, f"unsupported YAML tag {node.tag!r}")
        return [self.walk(item, (*path, i)) for i, item in enumerate(node.value)]

    def mapping(self, node: yaml.MappingNode, path: PathT) -> dict[str, Any]:
        explicit = sum(1 for key, _ in node.value if key.tag != "tag:yaml.org,2002:merge")
        self.loader.flatten_mapping(node)  # resolves '<<' merge keys, merged entries first
        merged = len(node.value) - explicit
        result: dict[str, Any] = {}
        first_line: dict[str, int] = {}
        for i, (key_node, value_node) in enumerate(node.value):
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                self.problem(path, "mapping keys must be plain strings", line)
                continue
            key = str(key_node.value)
            if key in first_line and i >= merged and first_line[key] >= 0:
                self.problem(
                    (*path, key), f"duplicate key {key!r} (first at line {first_line[key]})", line
                )
                continue
            # an explicit key overrides a merged one; merged keys are marked -1
            first_line[key] = line if i >= merged else -1
            self.located.lines[(*path, key)] = line
            result[key] = self.walk_value(value_node, (*path, key), line)
        return result

    def walk_value(self, node: yaml.Node, path: PathT, key_line: int) -> Any:
        value = self.walk(node, path)
        self.located.lines[path] = key_line
        return value

"""A string-keyed registry that doubles as a class decorator (Cloud Custodian style).

The YAML ``type:`` of a filter or action is its registry key. Unlike c7n, registering a name
twice is an error: two plugins silently overwriting each other is how policies change meaning
without anyone noticing.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from vmwarden.errors import PolicyError

T = TypeVar("T", bound=type)

EXAMPLE_MARKER = "Example:"


class Registry(Generic[T]):
    """Maps a policy name (``outside-zone``) to the class that implements it."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@filters.register("outside-zone")`` over the implementing class."""

        def decorate(cls: T) -> T:
            if name in self._items:
                other = self._items[name]
                raise PolicyError(
                    f"{self.kind} {name!r} is already registered by "
                    f"{other.__module__}.{other.__qualname__}",
                    hint="pick another name; registries never overwrite",
                )
            cls.type_name = name
            self._items[name] = cls
            return cls

        return decorate

    def get(self, name: str) -> T | None:
        return self._items.get(name)

    def names(self) -> list[str]:
        """Registered names, sorted: what error messages list as the valid choices."""
        return sorted(self._items)

    def items(self) -> list[tuple[str, T]]:
        return sorted(self._items.items())

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"


def example_of(cls: type) -> str | None:
    """The YAML example of a filter or action: the indented block after ``Example:``.

    The block is one rule (a ``rules:`` list item); the meta-tests load it through
    ``parse_policy`` so that no docstring example can rot.
    """
    doc = cls.__doc__ or ""
    lines = textwrap.dedent(doc).splitlines()
    for i, line in enumerate(lines):
        if line.strip() == EXAMPLE_MARKER:
            indent = len(line) - len(line.lstrip())
            block: list[str] = []
            for body in lines[i + 1 :]:
                if body.strip() and len(body) - len(body.lstrip()) <= indent:
                    break
                block.append(body)
            text = textwrap.dedent("\n".join(block)).strip("\n")
            return text or None
    return None

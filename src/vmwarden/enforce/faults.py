"""Fault injection points, so tests can kill the process between journal steps.

Set ``VMWARDEN_FAULT=<point>[:<n>]`` to make the process exit abruptly (``os._exit``, no
cleanup, exactly like a SIGKILL would) the n-th time it passes ``point`` (default: the
first). Points are named where ``fault_point()`` is called. Unset in production: one
``os.environ`` lookup per step.
"""

from __future__ import annotations

import os

_seen: dict[str, int] = {}
FAULT_EXIT_CODE = 137


def fault_point(name: str) -> None:
    spec = os.environ.get("VMWARDEN_FAULT")
    if not spec:
        return
    point, _, nth = spec.partition(":")
    if point != name:
        return
    _seen[name] = _seen.get(name, 0) + 1
    if _seen[name] >= int(nth or 1):
        os._exit(FAULT_EXIT_CODE)

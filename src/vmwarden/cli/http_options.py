"""``--max-body``: the request-body cap of ``serve`` and ``watch --listen`` (``api.bodycap``).

A size is bytes, or a number with ``k``/``K``/``KiB``, ``m``/``M``/``MiB``, ``g``/``G``/``GiB``
(powers of 1024); nonsense is refused at parse time (exit 2, naming the option) so that a
typo can never leave the API uncapped.
"""

from __future__ import annotations

import re
from typing import Annotated

import typer

_SIZE = re.compile(r"(\d{1,12})\s*(|b|k|kb|kib|m|mb|mib|g|gb|gib)", re.IGNORECASE)
_FACTOR = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
LARGEST = 1 << 30  # 1 GiB: above that the cap protects nothing
# not imported from vmwarden.api (the package pulls in FastAPI: --help must stay quick)
DEFAULT_MAX_BODY = 1 << 20


def parse_size(text: str) -> int:
    """``1MiB`` → 1048576; BadParameter for anything else, zero, or more than 1 GiB."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise typer.BadParameter(f"{text!r} is not a size: write e.g. 1MiB, 512KiB, 65536")
    size = int(match.group(1)) * _FACTOR[match.group(2)[:1].lower()]
    if not 0 < size <= LARGEST:
        raise typer.BadParameter(f"{text!r}: give more than 0 bytes and at most 1GiB")
    return size


def _checked(text: str) -> str:
    parse_size(text)
    return text


MaxBodyOpt = Annotated[
    str,
    typer.Option(
        "--max-body",
        help="Largest request body the API reads (larger: 413, before authentication).",
        callback=_checked,
    ),
]
DEFAULT_MAX_BODY_TEXT = f"{DEFAULT_MAX_BODY >> 20}MiB"

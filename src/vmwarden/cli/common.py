"""Options and helpers every command shares: the store, the actor, error output."""

from __future__ import annotations

import getpass
import os
import sys
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from vmwarden.model.escape import for_terminal

if TYPE_CHECKING:
    from vmwarden.store import Store


def _console(*, stderr: bool = False) -> Console:
    """A terminal keeps its own width; a pipe or log file gets 160 columns instead of Rich's
    80, so evidence is not cut to "…" in CI logs or ``| less``. ``COLUMNS`` still wins."""
    stream = sys.stderr if stderr else sys.stdout
    piped = not (hasattr(stream, "isatty") and stream.isatty())
    width = 160 if piped and not os.environ.get("COLUMNS") else None
    # emoji=False: ":skull:" in a VM name or path is text, not 💀 (markup strings parse codes)
    return Console(stderr=stderr, width=width, emoji=False)


err = _console(stderr=True)
out = _console()

DbOpt = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Database URL (default: SQLite under the user data dir; env VMWARDEN_DB).",
        envvar="VMWARDEN_DB",
        show_default=False,
    ),
]
ActorOpt = Annotated[
    str | None,
    typer.Option(
        "--actor",
        help="Who is acting, for the audit log (default: the login user).",
        show_default=False,
    ),
]
UriOpt = Annotated[
    list[str],
    typer.Option(
        "-c", "--connect", help="libvirt URI; repeat for several hosts.", show_default=False
    ),
]


def actor_name(given: str | None) -> str:
    """The operator as the audit log should name them: sudo's caller beats root."""
    if given:
        return given
    return os.environ.get("SUDO_USER") or getpass.getuser()


def open_store(db: str | None) -> Store:
    from vmwarden.store import Store  # SQLAlchemy: imported by the commands that open one

    return Store.open(db)


def shown(text: object) -> str:
    """Text from outside (VM names, hypervisor errors) inside a Rich markup string:
    controls shown as ``\\xNN``, markup escaped (``vmwarden.model.escape``)."""
    return for_terminal(str(text))


def complain(kind: str, text: object) -> None:
    """One ``error:``/``warning:`` line on stderr, whatever the terminal width (scripts grep
    it), about ``text`` from outside."""
    style = "bold red" if kind == "error" else "yellow"
    err.print(f"[{style}]{kind}:[/] {shown(text)}", highlight=False, soft_wrap=True)

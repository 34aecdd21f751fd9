"""Options and helpers every command shares: the store, the actor, error output."""

from __future__ import annotations

import getpass
import os
from typing import Annotated

import typer
from rich.console import Console

from vmwarden.store import Store

err = Console(stderr=True)
out = Console()

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
    return Store.open(db)

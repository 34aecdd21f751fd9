"""``vmwarden user``: who may use the API and dashboard, with which role."""

from __future__ import annotations

import json
import re
from enum import StrEnum
from typing import Annotated

import typer

from vmwarden.api.tokens import mint
from vmwarden.cli.common import ActorOpt, DbOpt, actor_name, err, open_store, out
from vmwarden.cli.login_options import IdleOpt, SessionMaxOpt, session_limits
from vmwarden.store.session_admin import (
    SessionInfo,
    SessionLimits,
    end_session,
    is_public_id,
    list_sessions,
)
from vmwarden.store.sessions import SessionsRepo, disable_user
from vmwarden.store.users import NAME_PATTERN, ROLES, UsersRepo

_EXAMPLE = "Example: vmwarden user add alice --role operator; vmwarden user list"
ReasonOpt = Annotated[
    str | None, typer.Option("--reason", help="Why, for the audit log.", show_default=False)
]


def _role(value: str) -> str:
    if value not in ROLES:
        raise typer.BadParameter(f"valid roles: {', '.join(ROLES)}")
    return value


def _name(value: str) -> str:
    if not re.fullmatch(NAME_PATTERN, value):
        raise typer.BadParameter("letters, digits and . _ @ - (up to 64, starting alphanumeric)")
    return value


class Fmt(StrEnum):
    table = "table"
    json = "json"


_SESSION_EPILOG = (
    "Sessions past --session-idle / --session-max are not listed: give the server's values "
    "when it runs with others. Example: vmwarden user sessions olga --format json"
)


def _limits(idle: str, session_max: str) -> SessionLimits:
    limits = session_limits(idle, session_max)
    return SessionLimits(idle=limits["session_idle"], max_age=limits["session_max_age"])


def _print_sessions(items: list[SessionInfo], fmt: Fmt) -> None:
    if fmt is Fmt.json:
        rows = [i.to_dict() for i in items]
        print(json.dumps(rows, indent=2, default=lambda at: at.isoformat()))
        return
    if not items:
        err.print("no live sessions")
    for i in items:
        times = (i.created_at, i.last_seen_at, i.expires_at)
        stamps = "\t".join(t.isoformat(timespec="seconds") for t in times)
        print(f"{i.id}\t{i.user}\t{i.role}\t{stamps}\t{i.source or '-'}")


def _show_token(token: str) -> None:
    # Plain print: the token must be copyable whatever the terminal width.
    print(token)
    err.print("[dim]shown once: store it now (it is kept only as a hash)[/]")


def register(app: typer.Typer) -> None:
    user = typer.Typer(
        help="API and dashboard users: auditor (read), operator (+ quarantine, release, "
        "acknowledge, request exceptions), admin (+ catalog, users, approvals, scans).",
        epilog=_EXAMPLE,
        no_args_is_help=True,
    )
    app.add_typer(user, name="user")

    @user.command("add", epilog="Example: vmwarden user add alice --role operator")
    def add(
        name: Annotated[str, typer.Argument(help="User name.", callback=_name)],
        role: Annotated[
            str, typer.Option("--role", help=f"One of: {', '.join(ROLES)}.", callback=_role)
        ],
        db: DbOpt = None,
        actor: ActorOpt = None,
        reason: ReasonOpt = None,
    ) -> None:
        """Create a user and print their API token once (only its hash is stored)."""
        token, tid, token_hash = mint()
        with open_store(db) as store:
            UsersRepo(store).add_user(
                name, role, tid, token_hash, actor=actor_name(actor), reason=reason
            )
        _show_token(token)

    @user.command("list", epilog="Example: vmwarden user list --db sqlite:///vmwarden.db")
    def list_users(db: DbOpt = None) -> None:
        """Users: name, role, enabled/disabled, created, created by, last sign-in (tab-separated).

        The last sign-in is the dashboard's or any API request's (to the minute; '-' never)."""
        with open_store(db) as store:
            users = UsersRepo(store).list_users()
        if not users:
            err.print("no users yet: vmwarden user add NAME --role admin")
        for u in users:
            state = "disabled" if u.disabled else "enabled"
            last = u.last_sign_in_at.isoformat(timespec="seconds") if u.last_sign_in_at else "-"
            created = u.created_at.isoformat()
            print(f"{u.name}\t{u.role}\t{state}\t{created}\t{u.created_by}\t{last}")

    @user.command("disable", epilog="Example: vmwarden user disable alice --reason 'left'")
    def disable(
        name: Annotated[str, typer.Argument(help="User name.")],
        db: DbOpt = None,
        actor: ActorOpt = None,
        reason: ReasonOpt = None,
    ) -> None:
        """Refuse the user's token and end their sessions (rotate re-enables).

        Refused for the last enabled admin: nobody could manage users afterwards."""
        with open_store(db) as store:
            disable_user(store, name, actor=actor_name(actor), reason=reason)
        out.print(f"disabled [bold]{name}[/]")

    @user.command("rotate", epilog="Example: vmwarden user rotate alice")
    def rotate(
        name: Annotated[str, typer.Argument(help="User name.")],
        db: DbOpt = None,
        actor: ActorOpt = None,
        reason: ReasonOpt = None,
    ) -> None:
        """Replace the user's token (the old one stops working) and print the new one once."""
        token, tid, token_hash = mint()
        with open_store(db) as store:
            user = UsersRepo(store).rotate_token(
                name, tid, token_hash, actor=actor_name(actor), reason=reason
            )
            SessionsRepo(store).revoke_user(user.id)  # the old token's sessions end with it
        _show_token(token)

    @user.command("sessions", epilog=_SESSION_EPILOG)
    def sessions(
        name: Annotated[
            str | None, typer.Argument(help="Only this user's sessions.", show_default=False)
        ] = None,
        fmt: Annotated[Fmt, typer.Option("--format", help="Output format.")] = Fmt.table,
        db: DbOpt = None,
        session_idle: IdleOpt = "30m",
        session_max: SessionMaxOpt = "8h",
    ) -> None:
        """Live dashboard sessions: id, user, role, signed in, last used, expires, source.

        Tab-separated, most recently used first. The id is public (not the cookie):
        give it to `vmwarden user end-session`."""
        limits = _limits(session_idle, session_max)
        with open_store(db) as store:
            items, _total = list_sessions(store, limits=limits, user=name, limit=10_000)
        _print_sessions(items, fmt)

    @user.command(
        "end-session", epilog="Example: vmwarden user end-session 3f9c0a1b2c3d4e5f --reason 'IR-12'"
    )
    def end(
        session_id: Annotated[str, typer.Argument(help="Session id from `user sessions`.")],
        reason: Annotated[str, typer.Option("--reason", help="Why, for the audit log (required).")],
        db: DbOpt = None,
        actor: ActorOpt = None,
        session_idle: IdleOpt = "30m",
        session_max: SessionMaxOpt = "8h",
    ) -> None:
        """End one session at once: its cookie is refused from the next request on."""
        if not is_public_id(session_id):
            raise typer.BadParameter("16 hex digits, as `vmwarden user sessions` lists them")
        if not reason.strip():
            raise typer.BadParameter("say why, for the audit log", param_hint="--reason")
        limits = _limits(session_idle, session_max)
        with open_store(db) as store:
            ended = end_session(
                store, session_id, actor=actor_name(actor), reason=reason.strip(), limits=limits
            )
        if ended is None:
            err.print(f"[bold red]error:[/] no live session {session_id}", highlight=False)
            raise typer.Exit(1)
        out.print(f"ended session {ended.id} of [bold]{ended.user}[/] (from {ended.source or '?'})")

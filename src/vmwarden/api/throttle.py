"""Sign-in with a token, throttled per source address and per account.

Every sign-in -- the dashboard's form and every ``Authorization: Bearer`` request -- goes
through :func:`sign_in`. Failures are counted in the store (:class:`ThrottleRepo`), so the
count survives a restart and is shared by every worker; each is journaled as
``login-failed`` with the source, the account (when the token's id names one) and why,
never the token. After ``Settings.throttle.limit`` failures in its window an address or
account is refused with **429 and Retry-After** -- even with a right token -- for
``base`` seconds, doubling at each further failure up to ``cap``. Address and account count
independently, and a success clears neither: failures only age out with their window. (Were a
success to clear its address, a guesser holding any valid token -- an auditor's -- could
interleave it between guesses and never be blocked.)

A refusal costs one argon2 check whether or not the token's id exists (see ``verified``), so
timing does not tell a stranger which ids are real. A success notes ``last_sign_in_at``
(at most once a minute per user) for access reviews.

Trade-offs, stated: clients behind one NAT or proxy share an address (and so a block); the
account of a bearer token is known only from its id, which is part of the secret, so a
stranger cannot lock an account they cannot name. The normal path costs one indexed read.
"""

from __future__ import annotations

import math
from datetime import datetime

from fastapi import Request

from vmwarden.api.deps import get_settings
from vmwarden.api.sessions import source_of
from vmwarden.api.tokens import burn, matches, token_id
from vmwarden.store import Store
from vmwarden.store.base import utcnow
from vmwarden.store.sessions import Subject, ThrottleRepo
from vmwarden.store.users import User, UsersRepo


class Throttled(Exception):
    """Too many failures from this address or for this account: try again later."""

    def __init__(self, until: datetime) -> None:
        self.until = until
        self.retry_after = max(1, math.ceil((until - utcnow()).total_seconds()))
        super().__init__(f"too many failed sign-ins: retry in {self.retry_after} s")


def credentials(store: Store, token: str) -> tuple[User, str] | None:
    """The user whose token id ``token`` carries, and that token's stored hash."""
    tid = token_id(token)
    return UsersRepo(store).credentials(tid) if tid else None


def verified(found: tuple[User, str] | None, token: str) -> User | None:
    """The found user if enabled and ``token`` matches their stored hash.

    The hash is checked whatever else is wrong -- an unknown id against a dummy hash, a
    disabled user against theirs -- so a refusal takes as long whether the id exists or not.
    A malformed token is refused at once: its shape is no secret.
    """
    if found is None:
        if token_id(token) is not None:
            burn(token)
        return None
    ok = matches(token, found[1])
    return found[0] if ok and not found[0].disabled else None


def _why(token: str, found: tuple[User, str] | None) -> str:
    if token_id(token) is None:
        return "malformed token"
    if found is None:
        return "unknown token"
    return "user disabled" if found[0].disabled else "wrong token"


def sign_in(request: Request, store: Store, token: str, *, via: str) -> User | None:
    """The enabled user holding ``token``; None (journaled, counted) when refused.

    Raises :class:`Throttled` while the address or account is blocked.
    """
    found = credentials(store, token)
    source = source_of(request)
    subjects: list[Subject] = [("address", source)]
    if found is not None:
        subjects.append(("account", found[0].name))
    repo = ThrottleRepo(store, get_settings(request).throttle)
    state = repo.state(subjects)
    if state.blocked_until is not None:
        raise Throttled(state.blocked_until)
    user = verified(found, token)
    if user is None:
        name = found[0].name if found else None
        details = {"source": source, "via": via, "user": name, "why": _why(token, found)}
        repo.fail(subjects, actor=name or "anonymous", details=details)
        return None
    UsersRepo(store).record_sign_in(user)
    return user

"""``expired-account``: a usable account past its shadow expiry or its password's max age."""

from __future__ import annotations

from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from vmwarden.policy.filters.base import filters
from vmwarden.policy.filters.guest import GuestFilter
from vmwarden.policy.verdict import NO_MATCH, Verdict

if TYPE_CHECKING:
    from vmwarden.model import GuestFacts, User
    from vmwarden.policy.context import Context

NEVER_DAYS = 99999  # shadow's conventional "no maximum age"


def _expiry(user: User, today: date) -> list[dict[str, Any]]:
    """Why ``user`` is expired (0, 1 or 2 reasons); ValueError on an unreadable date."""
    found: list[dict[str, Any]] = []
    if user.expires is not None:
        expires = date.fromisoformat(user.expires)
        if today >= expires:  # shadow(5): the account is disabled *on* that day
            found.append({"user": user.name, "reason": "account expired", "expires": user.expires})
    if user.last_change is not None and user.max_days is not None and user.max_days < NEVER_DAYS:
        try:
            due = date.fromisoformat(user.last_change) + timedelta(days=max(user.max_days, 0))
        except OverflowError:
            return found
        if today > due:
            found.append(
                {
                    "user": user.name,
                    "reason": "password max age exceeded",
                    "last_change": user.last_change,
                    "max_days": user.max_days,
                    "password_expired": due.isoformat(),
                }
            )
    return found


@filters.register("expired-account")
class ExpiredAccount(GuestFilter):
    """An account that is not locked has passed its shadow account expiry date (field 8),
    or its password is older than its maximum age (last change + max days, field 3 + 5).
    The evidence says which, per account. Locked accounts (``!``/``*``) are excluded: they
    cannot log in with a password anyway. Users not read → unknown; an unreadable date makes
    the guest unknown unless another account already matched.

    Example:
        - name: stale-accounts
          resource: vm
          severity: medium
          filters: [expired-account]
    """

    def judge(self, guest: GuestFacts, ctx: Context) -> Verdict:
        if guest.users is None:
            return Verdict.unknown("users could not be read")
        today = ctx.now.date()
        accounts: list[dict[str, Any]] = []
        unknown: str | None = None
        for user in guest.users:
            if user.password == "locked":
                continue
            try:
                accounts.extend(_expiry(user, today))
            except ValueError:
                unknown = unknown or f"user {user.name}: unreadable shadow date"
        if accounts:
            return Verdict.match(accounts=accounts)
        return Verdict.unknown(unknown) if unknown else NO_MATCH

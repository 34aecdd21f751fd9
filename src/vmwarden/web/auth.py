"""Who may do what in the browser, on top of the API's sessions and roles.

The dashboard keeps no users or sessions of its own: a person signs in with the API token
that ``vmwarden user add NAME --role ROLE`` printed, checked by the API's ``sign_in``
(argon2; failures journaled and throttled per address and account, 429 when blocked), and
the API's session (``login_session``; a signed cookie naming a server-side session row,
re-checked against the store on every request, so signing out, a disabled user or a rotated
token ends it at once, and a copied cookie with it) carries them from page to page.
Every form carries the session's CSRF token (``csrf_token``/``check_csrf``).

Roles are the store's (``auditor`` < ``operator`` < ``admin``); :data:`ACTIONS` names the
lowest role for each thing a page can do, so templates and handlers ask the same question.
"""

from __future__ import annotations

from vmwarden.store.users import ROLES

ACTIONS = {
    "read": "auditor",
    "release": "operator",
    "quarantine": "operator",
    "acknowledge": "operator",
    "request-exception": "operator",
    "decide-exception": "admin",  # and never one's own request: the store refuses that
    "approve-template": "admin",
    "read-sessions": "auditor",  # the Sessions page: who is signed in, from where (reviews)
    "end-session": "admin",
}
FLASH = "vmwarden.flash"  # session key: messages shown once on the next page


def can(role: str | None, action: str) -> bool:
    """True when ``role`` is at or above the lowest role allowed to do ``action``."""
    if role not in ROLES or action not in ACTIONS:
        return False
    return ROLES.index(role) >= ROLES.index(ACTIONS[action])

"""Accounts from /etc/passwd and /etc/shadow; password hashes become keyed fingerprints.

The hash itself never leaves this module: :func:`password_state` turns a shadow password
field into a state (``hash``, ``locked``, ``empty``) and, for a real hash only, an
HMAC-SHA256 under the installation's secret key: equal hashes (clones, shared passwords)
give equal fingerprints, and a fingerprint is useless for cracking without the key.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import date, timedelta

from vmwarden.inspect.guest.files import GuestFiles
from vmwarden.model import User

PASSWD = "/etc/passwd"
SHADOW = "/etc/shadow"
_EPOCH = date(1970, 1, 1)
FINGERPRINT_PREFIX = "hmac-sha256:"


def password_state(field: str, key: bytes) -> tuple[str, str | None]:
    """``(state, fingerprint)`` of a shadow (or passwd) password field.

    ``*``, ``!``, ``!!`` and ``!<hash>`` are locked (a locked hash is never compared: the
    account cannot log in with it); an empty field means no password is needed.
    """
    if field == "":
        return "empty", None
    if field[0] in "!*" or field in ("x", "LK", "NP"):
        return "locked", None
    digest = hmac.new(key, field.encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()
    return "hash", FINGERPRINT_PREFIX + digest


def shadow_date(field: str) -> str | None:
    """A shadow day count (days since 1970-01-01) as an ISO date; empty is ``None``."""
    days = _int(field)
    if days is None or not 0 <= days <= 2_932_896:  # up to 9999-12-31
        return None
    return (_EPOCH + timedelta(days=days)).isoformat()


def parse_shadow(text: str) -> dict[str, list[str]]:
    entries: dict[str, list[str]] = {}
    for line in text.splitlines():
        if not line or line.startswith(("#", "+", "-")):
            continue
        parts = line.split(":")
        parts += [""] * (9 - len(parts))
        entries.setdefault(parts[0], parts)
    return entries


def read_users(files: GuestFiles, key: bytes) -> tuple[list[User] | None, list[str]]:
    """Users of ``/etc/passwd`` with their shadow entries; also returns what went wrong.

    ``None`` when there is no passwd file. A missing shadow file leaves passwords
    ``unknown`` (recorded as an error); a user absent from shadow has password ``none``.
    """
    errors: list[str] = []
    passwd = files.read_text(PASSWD, limit=16 * 1024 * 1024)
    if passwd is None:
        return None, errors
    shadow_text = files.read_text(SHADOW, limit=16 * 1024 * 1024)
    shadow = parse_shadow(shadow_text) if shadow_text is not None else None
    if shadow is None:
        errors.append(f"users: {SHADOW} not found; password states unknown")
    users: list[User] = []
    seen: set[str] = set()
    for line in passwd.splitlines():
        if not line or line.startswith(("#", "+", "-")):
            continue
        parts = line.split(":")
        if len(parts) < 7 or not parts[0] or parts[0] in seen:
            continue
        seen.add(parts[0])
        user = User(
            name=parts[0],
            uid=_int(parts[2]),
            gid=_int(parts[3]),
            home=parts[5] or None,
            shell=parts[6] or None,
        )
        entry = shadow.get(user.name) if shadow is not None else None
        if entry is not None:
            user.password, user.password_fingerprint = password_state(entry[1], key)
            user.last_change = shadow_date(entry[2])
            user.max_days = _int(entry[4])
            user.expires = shadow_date(entry[7])
        elif parts[1] != "x":
            # The password field of passwd itself is in use (no shadow entry for the user).
            user.password, user.password_fingerprint = password_state(parts[1], key)
        elif shadow is not None:
            user.password = "none"
        users.append(user)
    return users, errors


def _int(text: str) -> int | None:
    text = text.strip()
    if not text or not text.lstrip("-").isdigit() or len(text) > 12:
        return None
    return int(text)

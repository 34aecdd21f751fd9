"""API tokens: minted once, shown once, stored only as an argon2 hash plus a lookup id.

A token is ``vmw_`` followed by 32 random bytes (URL-safe base64). Its first
:data:`ID_CHARS` characters after the prefix are its *id*: stored in clear and indexed, so
verifying a token is one indexed read and one argon2 check, never a scan of every user.
The argon2 parameters are OWASP's minimum (19 MiB, t=2): tokens carry 256 bits of entropy,
so the hash protects a leaked database, not a guessable password.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections import OrderedDict

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

PREFIX = "vmw_"
ID_CHARS = 12
_TOKEN_CHARS = 43  # token_urlsafe(32)
_hasher = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)


def mint() -> tuple[str, str, str]:
    """A fresh token: (token to show once, token id, argon2 hash to store)."""
    token = PREFIX + secrets.token_urlsafe(32)
    return token, token_id(token) or "", _hasher.hash(token)


def token_id(token: str) -> str | None:
    """The lookup id of a well-formed token, else None (nothing to look up)."""
    if not token.startswith(PREFIX) or len(token) != len(PREFIX) + _TOKEN_CHARS:
        return None
    body = token[len(PREFIX) :]
    if not all(c.isascii() and (c.isalnum() or c in "-_") for c in body):
        return None
    return body[:ID_CHARS]


# An argon2 hash of no token, with the same parameters as every stored one: a token whose id
# names nobody is checked against it, so that an unknown id costs what a wrong secret costs
# and the response time does not tell which ids exist. (tests check the parameters match.)
DUMMY_HASH = (
    "$argon2id$v=19$m=19456,t=2,p=1$XJCgcECWYVmccRvck9Ohrg"
    "$BmaEfkGxNHHwr/sSgf/jB6rsayzPGW6EDL8Ca/RL8Ck"
)


def burn(token: str) -> bool:
    """The work of one failed ``verify``, for a token with no stored hash; always False."""
    verify(DUMMY_HASH, token)
    return False


def needs_rehash(token_hash: str) -> bool:
    """True when ``token_hash`` was made with other parameters than ``mint`` uses now."""
    return _hasher.check_needs_rehash(token_hash)


def verify(token_hash: str, token: str) -> bool:
    try:
        return _hasher.verify(token_hash, token)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


# Memo of "this token matches this stored hash" (by SHA-256 of the token), so a client
# polling the API does not pay an argon2 check per request. The user row is still read on
# every request: a disabled user or a rotated token is refused at once.
_VERIFIED: OrderedDict[str, str] = OrderedDict()
_VERIFIED_MAX = 1024
_verified_lock = threading.Lock()


def matches(token: str, token_hash: str) -> bool:
    """``verify``, memoized per (token, hash) pair."""
    key = hashlib.sha256(token.encode()).hexdigest()
    with _verified_lock:
        if _VERIFIED.get(key) == token_hash:
            _VERIFIED.move_to_end(key)
            return True
    if not verify(token_hash, token):
        return False
    with _verified_lock:
        _VERIFIED[key] = token_hash
        while len(_VERIFIED) > _VERIFIED_MAX:
            _VERIFIED.popitem(last=False)
    return True

"""What one API process serves: which store, policy, hosts and image directories.

Built by the caller (``vmwarden serve``, ``vmwarden watch --listen``, tests) and handed to
:func:`vmwarden.api.create_app`; nothing is read from the environment at import time.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from vmwarden.store.session_admin import SessionLimits
from vmwarden.store.sessions import ThrottleRule


def _random_secret() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class Settings:
    """API settings.

    ``session_secret`` signs the dashboard's session cookie; when not given it is random per
    process (sessions then end with the process), never a constant. ``image_dirs`` bound
    where ``POST /api/templates`` may read files: the API never hashes a file elsewhere.
    ``web``: mount the dashboard (``vmwarden.web.build_router``) — ``None`` when present,
    ``True`` required, ``False`` never. A dashboard session ends after ``session_max_age``,
    or ``session_idle`` without a request, whichever comes first. ``throttle``: failed
    sign-ins allowed per address and per account before 429 (see ``vmwarden.api.throttle``).
    ``trust_proxy``: the client address (throttling, a session's source) is the last hop of
    ``X-Forwarded-For`` -- only behind a reverse proxy that sets it; otherwise any client
    could name its own address, so by default it is the socket peer and the header is ignored.
    """

    db_url: str | None = None
    policy_path: Path | None = None
    uris: tuple[str, ...] = ()
    image_dirs: tuple[Path, ...] = ()
    scan_images: tuple[Path, ...] = ()  # --images: API sweeps' storage (backing files allowed)
    session_secret: str = field(default_factory=_random_secret, repr=False)
    web: bool | None = None
    secure_cookies: bool = False  # the session cookie only over HTTPS
    max_page: int = 500
    session_max_age: timedelta = timedelta(hours=8)  # a working day
    session_idle: timedelta = timedelta(minutes=30)
    throttle: ThrottleRule = field(default_factory=ThrottleRule)
    trust_proxy: bool = False
    max_body: int = 1024 * 1024  # request bodies above this are refused 413 (api.bodycap)

    @property
    def session_limits(self) -> SessionLimits:
        return SessionLimits(idle=self.session_idle, max_age=self.session_max_age)

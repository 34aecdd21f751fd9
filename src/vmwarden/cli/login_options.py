"""Sign-in limits as options of ``serve`` and ``watch --listen`` (and ``user sessions``).

The limits were fixed in ``Settings``; a site with its own password policy (or a proxy in
front) needs to say them at start-up. Durations are written ``30s``, ``15m``, ``8h``, ``1d``
or combined (``1h30m``); nonsense is refused before anything starts (exit 2, naming the
option), so a typo cannot silently leave sessions living for days.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

import typer

from vmwarden.store.sessions import ThrottleRule

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(?:\d{1,6}[smhd])+")
LONGEST = timedelta(days=30)
# A session's last use is written at most once a minute (SessionsRepo.touch), so a shorter
# idle limit would end sessions that are in use.
SHORTEST_IDLE = timedelta(minutes=2)


def parse_duration(text: str) -> timedelta:
    """``15m`` → 15 minutes; BadParameter for anything else, zero, or more than 30 days."""
    value = text.strip().lower()
    if not _DURATION.fullmatch(value):
        raise typer.BadParameter(f"{text!r} is not a duration: write e.g. 30s, 15m, 8h, 1d")
    seconds = sum(int(n) * _UNITS[u] for n, u in re.findall(r"(\d+)([smhd])", value))
    span = timedelta(seconds=seconds)
    if not timedelta(0) < span <= LONGEST:
        raise typer.BadParameter(f"{text!r}: give more than 0s and at most 30d")
    return span


def _checked(text: str) -> str:
    parse_duration(text)  # refused at parse time: Click names the option, exit 2
    return text


MaxFailuresOpt = Annotated[
    int,
    typer.Option(
        "--login-max-failures",
        min=1,
        max=1000,
        help="Failed sign-ins per address or account, within --login-window, before 429.",
    ),
]
WindowOpt = Annotated[
    str,
    typer.Option(
        "--login-window", help="Window in which failed sign-ins count.", callback=_checked
    ),
]
LockoutOpt = Annotated[
    str,
    typer.Option(
        "--login-lockout", help="First block at the limit; doubles per failure.", callback=_checked
    ),
]
LockoutMaxOpt = Annotated[
    str, typer.Option("--login-lockout-max", help="Longest block.", callback=_checked)
]
IdleOpt = Annotated[
    str,
    typer.Option(
        "--session-idle", help="A dashboard session ends when unused this long.", callback=_checked
    ),
]
SessionMaxOpt = Annotated[
    str,
    typer.Option(
        "--session-max", help="A dashboard session ends this long after sign-in.", callback=_checked
    ),
]
TrustProxyOpt = Annotated[
    bool,
    typer.Option(
        "--trust-proxy/--no-trust-proxy",
        help="Take the client address from X-Forwarded-For's last hop (only behind a proxy "
        "that sets it); default: the socket peer, the header ignored.",
    ),
]


def session_limits(idle_text: str, max_text: str) -> dict[str, timedelta]:
    """``Settings`` keywords for the session limits, checked against each other."""
    idle, session_max = parse_duration(idle_text), parse_duration(max_text)
    if idle < SHORTEST_IDLE:
        raise typer.BadParameter(
            "at least 2m: a session's use is recorded once a minute", param_hint="--session-idle"
        )
    if idle > session_max:
        raise typer.BadParameter(
            f"{idle_text} is longer than --session-max ({max_text})",
            param_hint="--session-idle",
        )
    return {"session_idle": idle, "session_max_age": session_max}


def login_settings(
    *,
    max_failures: int,
    window: str,
    lockout: str,
    lockout_max: str,
    idle: str,
    session_max: str,
    trust_proxy: bool,
) -> dict[str, Any]:
    """``Settings`` keywords for every sign-in option (as typed), checked against each other."""
    window_span, base, cap = map(parse_duration, (window, lockout, lockout_max))
    if base > cap:
        raise typer.BadParameter(
            f"{lockout} is longer than --login-lockout-max ({lockout_max})",
            param_hint="--login-lockout",
        )
    rule = ThrottleRule(limit=max_failures, window=window_span, base=base, cap=cap)
    return {
        "throttle": rule,
        "trust_proxy": trust_proxy,
        **session_limits(idle, session_max),
    }

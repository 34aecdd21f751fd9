"""``vsphere://USER@HOST[:PORT][/DATACENTER][?insecure=1][&password_file=PATH]``.

The password is never part of the URI (it would end up in shell history, ``ps`` and the
store's records): it comes from ``VMWARDEN_VSPHERE_PASSWORD`` or a file named by
``password_file=``. TLS is verified against the system's trust store unless the operator
says ``insecure=1`` for this URI.
"""

from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass, field

from vmwarden.errors import ConnectorError

PASSWORD_ENV = "VMWARDEN_VSPHERE_PASSWORD"
_FORM = "vsphere://USER@HOST[:PORT][/DATACENTER][?insecure=1][&password_file=PATH]"
_QUERY_KEYS = {"insecure", "password_file"}


@dataclass(frozen=True)
class VsphereTarget:
    """What a vSphere URI names; ``password`` is excluded from ``repr`` (logs, tracebacks)."""

    uri: str
    user: str
    host: str
    port: int
    datacenter: str | None
    insecure: bool
    password: str = field(repr=False)


def _bad(uri: str, why: str) -> ConnectorError:
    return ConnectorError(f"invalid vSphere URI {_redacted(uri)!r}: {why}", hint=f"use {_FORM}")


def _redacted(uri: str) -> str:
    """The URI with any ``user:password@`` password replaced (it must never be echoed)."""
    parts = urllib.parse.urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def parse_vsphere_uri(uri: str, env: dict[str, str] | None = None) -> VsphereTarget:
    """Parse ``uri`` and find its password; every mistake is a one-line ``ConnectorError``."""
    env = dict(os.environ) if env is None else env
    try:
        parts = urllib.parse.urlsplit(uri)
        port = parts.port or 443
    except ValueError as exc:
        raise _bad(uri, str(exc)) from None
    if parts.scheme.lower() != "vsphere":
        raise _bad(uri, "the scheme must be vsphere")
    if parts.password is not None:
        raise _bad(
            uri,
            f"a password in the URI is refused (it would be logged); set {PASSWORD_ENV} "
            "or password_file=",
        )
    if not parts.username:
        raise _bad(uri, "no user (USER@HOST)")
    if not parts.hostname:
        raise _bad(uri, "no host")
    path = parts.path.strip("/")
    if "/" in path:
        raise _bad(uri, "the path is one datacenter name")
    try:
        query = urllib.parse.parse_qs(parts.query, keep_blank_values=True, strict_parsing=False)
    except ValueError as exc:
        raise _bad(uri, str(exc)) from None
    unknown = sorted(set(query) - _QUERY_KEYS)
    if unknown:
        raise _bad(uri, f"unknown query key(s) {', '.join(unknown)}")
    insecure_raw = query.get("insecure", ["0"])[-1].lower()
    if insecure_raw not in ("0", "1", "true", "false", "yes", "no"):
        raise _bad(uri, f"insecure={insecure_raw} (use 1 or 0)")
    password = _password(uri, query.get("password_file", [None])[-1], env)
    return VsphereTarget(
        uri=uri,
        user=urllib.parse.unquote(parts.username),
        host=parts.hostname,
        port=port,
        datacenter=urllib.parse.unquote(path) or None,
        insecure=insecure_raw in ("1", "true", "yes"),
        password=password,
    )


def _password(uri: str, path: str | None, env: dict[str, str]) -> str:
    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                secret = fh.readline().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConnectorError(
                f"{_redacted(uri)}: cannot read password_file {path}: "
                f"{getattr(exc, 'strerror', None) or exc}"
            ) from None
        if not secret:
            raise ConnectorError(f"{_redacted(uri)}: password_file {path} is empty")
        return secret
    secret = env.get(PASSWORD_ENV, "")
    if not secret:
        raise ConnectorError(
            f"no password for {_redacted(uri)}",
            hint=f"set {PASSWORD_ENV}, or add password_file=PATH to the URI query",
        )
    return secret

"""``vmwarden serve``: the REST API (and dashboard, when installed) over an existing store."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated

import typer

from vmwarden.cli.common import DbOpt, UriOpt, err
from vmwarden.cli.http_options import MaxBodyOpt, parse_size
from vmwarden.cli.login_options import (
    IdleOpt,
    LockoutMaxOpt,
    LockoutOpt,
    MaxFailuresOpt,
    SessionMaxOpt,
    TrustProxyOpt,
    WindowOpt,
    login_settings,
)

_EXAMPLE = (
    "Example: vmwarden serve --listen 127.0.0.1:8080 -p policy.yaml -c qemu:///system "
    "--image-dir /var/lib/libvirt/images/templates"
)
SECRET_ENV = "VMWARDEN_SESSION_SECRET"


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) → (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise typer.BadParameter("use HOST:PORT, e.g. 127.0.0.1:8080", param_hint="--listen")
    return host.strip("[]"), int(port)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def register(app: typer.Typer) -> None:
    @app.command(epilog=_EXAMPLE)
    def serve(
        listen: Annotated[
            str, typer.Option("--listen", help="Address to listen on, HOST:PORT.")
        ] = "127.0.0.1:8080",
        db: DbOpt = None,
        policy: Annotated[
            Path | None,
            typer.Option("-p", "--policy", help="Policy (quarantine network, scans, rules)."),
        ] = None,
        connect: UriOpt = [],  # noqa: B006  (Typer reads the default, never mutates it)
        image_dir: Annotated[
            list[Path] | None,
            typer.Option(
                "--image-dir",
                help="Directory template approval may read images from (repeatable).",
                show_default=False,
            ),
        ] = None,
        images: Annotated[
            list[Path] | None,
            typer.Option(
                "--images",
                help="Storage directory outside libvirt's pools for the sweeps the API starts: "
                "backing files may lie there, and its images are inspected (repeatable).",
                show_default=False,
                exists=True,
                file_okay=False,
            ),
        ] = None,
        web: Annotated[
            bool | None,
            typer.Option("--web/--no-web", help="Dashboard (default: when installed)."),
        ] = None,
        tls_cert: Annotated[
            Path | None, typer.Option("--tls-cert", help="PEM certificate.")
        ] = None,
        tls_key: Annotated[Path | None, typer.Option("--tls-key", help="PEM private key.")] = None,
        login_max_failures: MaxFailuresOpt = 5,
        login_window: WindowOpt = "15m",
        login_lockout: LockoutOpt = "30s",
        login_lockout_max: LockoutMaxOpt = "15m",
        session_idle: IdleOpt = "30m",
        session_max: SessionMaxOpt = "8h",
        trust_proxy: TrustProxyOpt = False,
        max_body: MaxBodyOpt = "1MiB",
    ) -> None:
        """Serve the API under /api (OpenAPI at /api/openapi.json) and the dashboard.

        Every route but /api/health needs a token: create one with `vmwarden user add`.
        The session secret comes from $VMWARDEN_SESSION_SECRET, else is random per process.
        The client address (throttling, sessions) is the socket peer unless --trust-proxy.
        """
        import uvicorn

        from vmwarden.api import Settings, create_app
        from vmwarden.store import Store
        from vmwarden.store.users import UsersRepo

        host, port = parse_listen(listen)
        if (tls_cert is None) != (tls_key is None):
            raise typer.BadParameter("give both --tls-cert and --tls-key", param_hint="--tls-cert")
        if policy is not None and not policy.is_file():
            raise typer.BadParameter(f"no policy file {policy}", param_hint="--policy")
        kwargs = login_settings(
            max_failures=login_max_failures,
            window=login_window,
            lockout=login_lockout,
            lockout_max=login_lockout_max,
            idle=session_idle,
            session_max=session_max,
            trust_proxy=trust_proxy,
        )
        secret = os.environ.get(SECRET_ENV, "").strip()
        if secret:
            kwargs["session_secret"] = secret
        settings = Settings(
            db_url=db,
            policy_path=policy,
            uris=tuple(connect),
            image_dirs=tuple(p.resolve() for p in image_dir or []),
            scan_images=tuple(p.resolve() for p in images or []),
            web=web,
            secure_cookies=tls_cert is not None,
            max_body=parse_size(max_body),
            **kwargs,
        )
        store = Store.open(db)
        try:
            if not UsersRepo(store).list_users():
                err.print("no users yet: create one with vmwarden user add NAME --role admin")
            if tls_cert is None and not _loopback(host):
                err.print(f"warning: serving {host} without TLS: tokens cross the network in clear")
            app = create_app(settings, store=store)
            uvicorn.run(
                app,
                host=host,
                port=port,
                ssl_certfile=str(tls_cert) if tls_cert else None,
                ssl_keyfile=str(tls_key) if tls_key else None,
                log_level="info",
                server_header=False,
                proxy_headers=False,  # X-Forwarded-For is the app's to judge (trust_proxy)
            )
        finally:
            store.close()

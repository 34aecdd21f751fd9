"""``vmwarden watch``: the continuous monitor (events, power-on gate, alerts, metrics)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path
from typing import Annotated

import typer

from vmwarden.cli.common import DbOpt, UriOpt, complain, err, open_store
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
from vmwarden.cli.worker import SchedulerInsecureOpt, SchedulerOpt, disk_executor
from vmwarden.engine.inspection import InspectionOptions
from vmwarden.engine.metrics import listen_socket
from vmwarden.engine.scan import SweepOptions
from vmwarden.engine.watch import WatchConfig, Watcher
from vmwarden.errors import PolicyError, VmwardenError
from vmwarden.policy import load_policy


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise PolicyError(f"--listen wants HOST:PORT, got {text!r}", hint="e.g. 127.0.0.1:9464")
    return host.strip("[]") or "127.0.0.1", int(port)


def parse_backoff(text: str) -> tuple[float, float]:
    low, sep, high = text.partition(":")
    try:
        pair = (float(low), float(high if sep else low))
    except ValueError:
        pair = (0.0, 0.0)
    if not 0 < pair[0] <= pair[1]:
        raise PolicyError(f"--backoff wants MIN:MAX seconds, got {text!r}", hint="e.g. 0.5:30")
    return pair


def register(app: typer.Typer) -> None:
    @app.command(
        epilog="Example: vmwarden watch -c qemu:///system -p policy.yaml --listen 127.0.0.1:8080"
    )
    def watch(
        connect: UriOpt,
        policy: Annotated[Path, typer.Option("-p", "--policy", help="Policy YAML file.")],
        interval: Annotated[
            float, typer.Option("--interval", help="Seconds between full reconciles.")
        ] = 300.0,
        listen: Annotated[
            str | None,
            typer.Option(
                "--listen",
                help="Serve the API, dashboard, /metrics and /state on HOST:PORT.",
                show_default=False,
            ),
        ] = None,
        metrics_listen: Annotated[
            str | None,
            typer.Option(
                "--metrics-listen",
                help="Serve only /metrics and /state (a token is required) on HOST:PORT.",
                show_default=False,
            ),
        ] = None,
        enforce: Annotated[
            bool,
            typer.Option(
                "--enforce/--no-enforce", help="Quarantine and release (default) or only report."
            ),
        ] = True,
        only: Annotated[
            list[str] | None,
            typer.Option(
                "--only",
                help="Watch only VMs whose name matches this glob (repeatable).",
                show_default=False,
            ),
        ] = None,
        hold_unregistered: Annotated[
            bool,
            typer.Option(
                "--hold-unregistered/--allow-unregistered",
                help="Hold VMs not registered in their metadata.",
            ),
        ] = True,
        alert_rate: Annotated[
            float, typer.Option("--alert-rate", help="Alerts per second per receiver (sustained).")
        ] = 1.0,
        alert_burst: Annotated[
            int, typer.Option("--alert-burst", help="Alerts a receiver may get at once.")
        ] = 10,
        inspect: Annotated[
            bool,
            typer.Option("--inspect/--no-inspect", help="Read guest facts from disks offline."),
        ] = True,
        images: Annotated[
            list[Path] | None,
            typer.Option(
                "--images",
                help="Storage directory outside libvirt's pools: backing files may lie there, "
                "and its images are discovered and inspected (repeatable).",
                show_default=False,
                exists=True,
                file_okay=False,
            ),
        ] = None,
        admission_socket: Annotated[
            str | None,
            typer.Option(
                "--admission-socket",
                help="Answer the libvirt qemu hook on this Unix socket.",
                show_default=False,
            ),
        ] = None,
        backoff: Annotated[
            str,
            typer.Option("--backoff", help="Reconnect delay MIN:MAX seconds (doubling from MIN)."),
        ] = "0.5:30",
        verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Log each action.")] = False,
        db: DbOpt = None,
        login_max_failures: MaxFailuresOpt = 5,
        login_window: WindowOpt = "15m",
        login_lockout: LockoutOpt = "30s",
        login_lockout_max: LockoutMaxOpt = "15m",
        session_idle: IdleOpt = "30m",
        session_max: SessionMaxOpt = "8h",
        trust_proxy: TrustProxyOpt = False,
        max_body: MaxBodyOpt = "1MiB",
        scheduler: SchedulerOpt = None,
        scheduler_insecure: SchedulerInsecureOpt = False,
    ) -> None:
        """Continuous monitor: events, power-on gate, enforcement, alerts and metrics.

        The sign-in options and --max-body apply to the API and dashboard of --listen.
        SIGHUP reloads the policy file (one that does not load is reported; the old stays)."""
        if not connect:
            raise typer.BadParameter("give at least one -c URI (e.g. -c qemu:///system)")
        sign_in = login_settings(
            max_failures=login_max_failures,
            window=login_window,
            lockout=login_lockout,
            lockout_max=login_lockout_max,
            idle=session_idle,
            session_max=session_max,
            trust_proxy=trust_proxy,
        )
        loaded = load_policy(policy)
        if enforce and loaded.quarantine is None:
            raise PolicyError(
                f"{policy}: watch enforces quarantine but the policy has no `quarantine:` block",
                hint="add quarantine: {network: NAME}, or run with --no-enforce",
            )
        logging.getLogger("vmwarden").setLevel(logging.INFO if verbose else logging.WARNING)
        # #10.5: say now where quarantine cannot work
        if loaded.quarantine is not None:
            from vmwarden.engine.quarantine_targets import check_hosts

            for problem in check_hosts(loaded.quarantine.spec(), list(connect)):
                complain("warning", problem)
        config = WatchConfig(
            uris=list(connect),
            interval=interval,
            enforce=enforce,
            listen=parse_listen(metrics_listen) if metrics_listen else None,
            only=list(only or []),
            hold_unregistered=hold_unregistered,
            alert_rate=alert_rate,
            alert_burst=alert_burst,
            admission_socket=admission_socket,
            backoff=parse_backoff(backoff),
        )
        options = SweepOptions(
            images_dirs=[p.resolve() for p in images or []],
            inspect=InspectionOptions(enabled=inspect),
        )
        # bound before anything starts: a busy port is one line and exit 2 (ListenError)
        http_sock = listen_socket(*parse_listen(listen)) if listen else None
        with contextlib.ExitStack() as stack:
            if http_sock is not None:
                stack.callback(http_sock.close)
            store = stack.enter_context(open_store(db))
            options.executor = stack.enter_context(
                disk_executor(scheduler, insecure=scheduler_insecure)
            )
            if metrics_listen:
                from vmwarden.cli.watch_http import token_checker

                config.authorize = token_checker(store)
            watcher = Watcher(config, loaded, store, sweep_options=options)
            err.print(f"vmwarden watch: {len(config.uris)} host(s); Ctrl-C stops", highlight=False)
            if http_sock is not None:
                from vmwarden.cli.watch_http import HttpThread, watch_app

                app = watch_app(
                    watcher,
                    store,
                    db=db,
                    policy=policy,
                    uris=list(connect),
                    max_body=parse_size(max_body),
                    **sign_in,
                )
                http = HttpThread(app, http_sock, on_exit=watcher.stop).start()
                stack.callback(http.stop)
                host, port = http_sock.getsockname()[:2]
                err.print(f"API and dashboard on http://{host}:{port}/", highlight=False)
            asyncio.run(_run(watcher, policy))


async def _run(watcher: Watcher, policy: Path) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, watcher.stop)
    reloads: set[asyncio.Task[None]] = set()

    def on_hup() -> None:
        task = loop.create_task(_reload(watcher, policy))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, on_hup)
    await watcher.run()


async def _reload(watcher: Watcher, policy: Path) -> None:
    """SIGHUP: the policy file again; a bad one is reported and the old one stays."""
    try:
        await watcher.reload(lambda: load_policy(policy))
    except VmwardenError as exc:
        hint = f" ({exc.hint})" if exc.hint else ""
        err.print(
            f"policy not reloaded, the old one stays: {exc}{hint}", markup=False, soft_wrap=True
        )
        return
    err.print(f"policy reloaded from {policy}", markup=False, highlight=False, soft_wrap=True)

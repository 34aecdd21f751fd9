"""``vmwarden scan``: one sweep over one or more libvirt hosts.

The exit code says whether the run did what it was asked (``ScanResult.exit_code``): 130
(143 for SIGTERM) when a stop request ended enforcement, 1 when an action failed, 2 when a
host was unreachable (the others were still scanned and enforced), 3 for ``--fail-on``. The
result is printed first, whatever the code; stderr then names each problem: which host, which
VM, why, and after a stop what was done and what was not.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from vmwarden.cli.common import (
    ActorOpt,
    DbOpt,
    UriOpt,
    actor_name,
    complain,
    err,
    open_store,
    out,
    shown,
)
from vmwarden.cli.render import render_json, render_ocsf, render_table
from vmwarden.cli.worker import SchedulerInsecureOpt, SchedulerOpt, disk_executor
from vmwarden.enforce.runner import INTERRUPTED, StopRequest
from vmwarden.engine.inspection import InspectionOptions
from vmwarden.engine.result import EXIT_SIGNAL_BASE
from vmwarden.engine.scan import ScanResult, Sweep, SweepOptions
from vmwarden.errors import PolicyError
from vmwarden.model import ActionRecord, Severity
from vmwarden.policy import load_policy

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_STOPPING = b"stopping: finishing the VM in flight, then reporting what is left\n"
# A second Ctrl-C does not abandon the VM in flight (that is what #10.7 prevents); SIGKILL
# still does, and then the next run finishes its journaled steps.
_STILL_STOPPING = (
    b"still finishing the VM in flight; kill -KILL %d forces an exit "
    b"(the next run then completes it from the journal)\n"
)


class Format(StrEnum):
    table = "table"
    json = "json"
    ocsf = "ocsf"


def run_sweep(
    uris: list[str],
    policy_path: Path,
    db: str | None,
    *,
    enforce: bool,
    actor: str,
    show_progress: bool,
    options: SweepOptions | None = None,
    stop: StopRequest | None = None,
) -> ScanResult:
    """Validate the policy first, then sweep, with a progress bar on stderr when asked."""
    policy = load_policy(policy_path)
    with open_store(db) as store:
        if not show_progress:
            sweep = Sweep(store, policy, actor=actor, options=options)
            return sweep.run(uris, enforce=enforce, stop=stop)
        columns = (
            TextColumn("{task.description:<10}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=err, transient=True) as bar:
            tasks: dict[str, int] = {}

            def progress(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = bar.add_task(stage, total=total)
                bar.update(tasks[stage], completed=done, total=total)

            sweep = Sweep(store, policy, actor=actor, progress=progress, options=options)
            return sweep.run(uris, enforce=enforce, stop=stop)


@contextlib.contextmanager
def stop_on_signals(stop: StopRequest) -> Iterator[None]:
    """Ctrl-C and SIGTERM become ``stop.request`` for the sweep: before any action they
    end it at once (``KeyboardInterrupt``), during enforcement they let the VM in flight
    finish. The previous handlers come back afterwards."""

    def handler(signum: int, _frame: object) -> None:
        if stop.armed:
            os.write(2, _STOPPING if not stop.requested else _STILL_STOPPING % os.getpid())
        stop.request(signum)

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _listing(actions: list[ActionRecord], *, status: bool) -> str:
    """``(2) quarantine web01 (done), notify web01 (failed)``: what ran, or what did not."""
    items = [f"{a.action} {a.name}" + (f" ({a.status})" if status else "") for a in actions]
    return f"({len(items)}) " + (", ".join(items) or "none")


def report_problems(result: ScanResult) -> None:
    """On stderr, after the result: each unreachable host, each failed action (VM and
    reason), and after a stop what was done and what was not."""
    for line in result.problems():
        complain("error", line)
    if result.interrupted_by is not None:
        ran = [a for a in result.actions if a.status != INTERRUPTED]
        left = result.not_done()
        err.print(f"done {shown(_listing(ran, status=True))}", highlight=False, soft_wrap=True)
        err.print(
            f"not done {shown(_listing(left, status=False))}", highlight=False, soft_wrap=True
        )
        err.print(
            "[dim]hint:[/] run the same scan --enforce again to carry out the rest",
            highlight=False,
        )


def show(result: ScanResult, fmt: Format) -> None:
    """The result on stdout in the chosen format, then its problems on stderr."""
    if fmt is Format.json:
        print(render_json(result))
    elif fmt is Format.ocsf:
        print(render_ocsf(result))
    else:
        render_table(result, out)
    report_problems(result)


def register(app: typer.Typer) -> None:
    @app.command(epilog="Example: vmwarden scan -c qemu:///system -p policy.yaml --enforce")
    def scan(
        connect: UriOpt,
        policy: Annotated[Path, typer.Option("-p", "--policy", help="Policy YAML file.")],
        enforce: Annotated[
            bool, typer.Option("--enforce", help="Run the rules' actions (default: report only).")
        ] = False,
        fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
        fail_on: Annotated[
            str | None,
            typer.Option("--fail-on", help="Exit 3 if a finding at or above this severity exists."),
        ] = None,
        images: Annotated[
            list[Path] | None,
            typer.Option(
                "--images",
                help="Also discover and inspect disk images under this directory (repeatable).",
                show_default=False,
                exists=True,
                file_okay=False,
            ),
        ] = None,
        vulns: Annotated[
            Path | None,
            typer.Option(
                "--vulns",
                help="OSV advisories (directory or .zip); overrides the policy's vulns:.",
                show_default=False,
                exists=True,
            ),
        ] = None,
        inspect: Annotated[
            bool,
            typer.Option("--inspect/--no-inspect", help="Read guest facts from disks offline."),
        ] = True,
        inspect_timeout: Annotated[
            float, typer.Option("--inspect-timeout", help="Seconds per image before giving up.")
        ] = 60.0,
        db: DbOpt = None,
        actor: ActorOpt = None,
        scheduler: SchedulerOpt = None,
        scheduler_insecure: SchedulerInsecureOpt = False,
    ) -> None:
        """One sweep: inventory, disk inspection, evaluation and (with --enforce) actions."""
        if not connect:
            raise typer.BadParameter("give at least one -c URI (e.g. -c qemu:///system)")
        threshold = None
        if fail_on is not None:
            try:
                threshold = Severity.parse(fail_on)
            except ValueError as exc:
                raise PolicyError(f"--fail-on: {exc}") from None
        stop = StopRequest()
        try:
            # the handlers stay until the report is out: a late Ctrl-C must not cut it short
            with (
                stop_on_signals(stop),
                disk_executor(scheduler, insecure=scheduler_insecure) as executor,
            ):
                result = run_sweep(
                    list(connect),
                    policy,
                    db,
                    enforce=enforce,
                    actor=actor_name(actor),
                    show_progress=fmt is Format.table and err.is_terminal,
                    options=SweepOptions(
                        images_dirs=[p.resolve() for p in images or []],
                        inspect=InspectionOptions(enabled=inspect, timeout=inspect_timeout),
                        vulns=vulns,
                        executor=executor,
                    ),
                    stop=stop,
                )
                show(result, fmt)
        except KeyboardInterrupt:  # raised only while unarmed: no action had started
            complain("error", f"interrupted by {stop.signal_name}: nothing was changed")
            raise typer.Exit(EXIT_SIGNAL_BASE + (stop.signum or signal.SIGINT)) from None
        code = result.exit_code(threshold)
        if code:
            raise typer.Exit(code)

"""``vmwarden scan``: one sweep over one or more libvirt hosts."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from vmwarden.cli.common import ActorOpt, DbOpt, UriOpt, actor_name, err, open_store, out
from vmwarden.cli.render import render_json, render_ocsf, render_table
from vmwarden.engine.inspection import InspectionOptions
from vmwarden.engine.scan import ScanResult, Sweep, SweepOptions
from vmwarden.errors import PolicyError
from vmwarden.model import Severity
from vmwarden.policy import load_policy

FAIL_EXIT = 3


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
) -> ScanResult:
    """Validate the policy first, then sweep, with a progress bar on stderr when asked."""
    policy = load_policy(policy_path)
    with open_store(db) as store:
        if not show_progress:
            return Sweep(store, policy, actor=actor, options=options).run(uris, enforce=enforce)
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
            return sweep.run(uris, enforce=enforce)


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
            ),
        )
        if fmt is Format.json:
            print(render_json(result))
        elif fmt is Format.ocsf:
            print(render_ocsf(result))
        else:
            render_table(result, out)
        worst = result.worst()
        if threshold is not None and worst is not None and worst >= threshold:
            raise typer.Exit(FAIL_EXIT)

"""``vmwarden demo``: the embedded default — build a demo estate, scan it, show the summary."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import platformdirs
import typer

from vmwarden.cli.common import ActorOpt, DbOpt, actor_name, out
from vmwarden.cli.render import render_json, render_table
from vmwarden.cli.scan import run_sweep
from vmwarden.engine.demo import build_demo_estate


def register(app: typer.Typer) -> None:
    @app.command(epilog="Example: vmwarden demo --enforce")
    def demo(
        workdir: Annotated[
            Path | None, typer.Option("--workdir", help="Where to build the demo estate.")
        ] = None,
        enforce: Annotated[
            bool, typer.Option("--enforce", help="Also run the demo policy's actions.")
        ] = False,
        json_out: Annotated[
            bool, typer.Option("--json", help="Print the scan result as JSON.")
        ] = False,
        db: DbOpt = None,
        actor: ActorOpt = None,
    ) -> None:
        """Build a demo estate (3 test-driver hosts, 50+ VMs, real qcow2 images) and scan it."""
        wd = workdir or Path(platformdirs.user_cache_dir("vmwarden")) / "demo"
        estate = build_demo_estate(wd)
        db_url = db or f"sqlite:///{wd / 'demo.db'}"
        if not json_out:
            hosts = len(estate.uris)
            out.print(f"[bold]Demo estate[/] in {wd}: {hosts} hosts, policy {estate.policy_path}")
        result = run_sweep(
            estate.uris,
            estate.policy_path,
            db_url,
            enforce=enforce,
            actor=actor_name(actor),
            show_progress=not json_out,
        )
        if json_out:
            print(render_json(result))
            return
        render_table(result, out, max_rows=25)
        uris = " ".join("-c " + u for u in estate.uris)
        out.print(f"\nNext: vmwarden report findings --db {db_url}", highlight=False)
        out.print(
            f"      vmwarden scan {uris} -p {estate.policy_path} --db {db_url}", highlight=False
        )

"""``vmwarden demo``: the embedded default — build a demo estate, scan it, show the summary."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated

import platformdirs
import typer
from rich.text import Text

from vmwarden.cli.common import ActorOpt, DbOpt, actor_name, open_store, out
from vmwarden.cli.render import render_json, render_table
from vmwarden.cli.scan import run_sweep
from vmwarden.cli.serve import parse_listen
from vmwarden.engine.demo import DemoEstate, build_demo_estate
from vmwarden.engine.demo_vsphere import approve_template, vsphere_estate
from vmwarden.model import Finding
from vmwarden.model.escape import visible
from vmwarden.policy import load_policy
from vmwarden.policy.rules import Rule


def register(app: typer.Typer) -> None:
    @app.command(epilog="Example: vmwarden demo --enforce --serve")
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
        serve: Annotated[
            bool,
            typer.Option(
                "--serve",
                help="Then serve the dashboard and API on the demo store (prints an admin "
                "token once).",
            ),
        ] = False,
        listen: Annotated[
            str, typer.Option("--listen", help="With --serve: address, HOST:PORT.")
        ] = "127.0.0.1:8080",
        vsphere: Annotated[
            bool,
            typer.Option(
                "--vsphere/--no-vsphere",
                help="Also run a small vSphere estate in vcsim when Go can build it.",
            ),
        ] = True,
        db: DbOpt = None,
        actor: ActorOpt = None,
    ) -> None:
        """Build a demo estate (4 test-driver hosts, 50+ VMs, real qcow2 guests; with Go, a
        3-VM vSphere estate in vcsim too) and scan it."""
        if serve:
            parse_listen(listen)  # a bad address fails before the estate is built
        wd = workdir or Path(platformdirs.user_cache_dir("vmwarden")) / "demo"
        estate = build_demo_estate(wd)
        db_url = db or f"sqlite:///{wd / 'demo.db'}"
        with ExitStack() as stack:
            uris = list(estate.uris)
            if vsphere:
                say = None if json_out else lambda line: note(line, json_out)
                vs = stack.enter_context(
                    vsphere_estate(wd, estate.images_dir / "templates", say=say)
                )
                note(vs.note, json_out)
                if vs.uri is not None and vs.template is not None:
                    with open_store(db_url) as store:
                        approve_template(store, vs.template)
                    uris.append(vs.uri)
            _run_demo(estate, uris, wd, db_url, enforce=enforce, json_out=json_out,
                      serve=serve, listen=listen, actor=actor)  # fmt: skip


def note(line: str, json_out: bool) -> None:
    """One line about the demo itself (stderr under --json, whose stdout is the result)."""
    if json_out:
        print(line, file=sys.stderr)
    else:
        out.print(line, highlight=False)


def _run_demo(
    estate: DemoEstate, uris: list[str], wd: Path, db_url: str, *, enforce: bool,
    json_out: bool, serve: bool, listen: str, actor: str | None,
) -> None:  # fmt: skip
    """Sweep ``uris`` with the demo policy and show the result (and serve it)."""
    if not json_out:
        hosts = f"{len(estate.uris)} libvirt hosts" + (
            " and a vCenter (vcsim)" if len(uris) > len(estate.uris) else ""
        )
        out.print(f"[bold]Demo estate[/] in {wd}: {hosts}, policy {estate.policy_path}")
    result = run_sweep(
        uris,
        estate.policy_path,
        db_url,
        enforce=enforce,
        actor=actor_name(actor),
        show_progress=not json_out,
    )
    if json_out:
        print(render_json(result))
        if serve:
            serve_demo(uris, estate.policy_path, db_url, listen, enforce=enforce)
        return
    render_table(result, out, max_rows=25)
    print_todo(result.findings, load_policy(estate.policy_path).rules)
    shown = " ".join("-c " + u for u in estate.uris)  # vcsim stops with the demo
    out.print(f"\nNext: vmwarden report findings --db {db_url}", highlight=False)
    out.print(f"      vmwarden scan {shown} -p {estate.policy_path} --db {db_url}", highlight=False)
    if serve:
        serve_demo(uris, estate.policy_path, db_url, listen, enforce=enforce)


def todo_groups(findings: list[Finding], rules: Iterable[Rule]) -> list[tuple[str, list[str]]]:
    """Findings grouped by what the operator should do (each rule's ``remediation``, else its
    name), worst first; each group lists its VMs or images once, in finding order."""
    remedy = {r.name: r.remediation or f"Review: {r.name}" for r in rules}
    groups: dict[str, dict[str, None]] = {}
    worst: dict[str, int] = {}
    for f in findings:
        key = remedy.get(f.rule, f"Review: {f.rule}")
        groups.setdefault(key, {})[f.name] = None
        worst[key] = max(worst.get(key, 0), int(f.severity))
    order = sorted(groups, key=lambda k: (-worst[k], k))
    return [(k, list(groups[k])) for k in order]


def print_todo(findings: list[Finding], rules: Iterable[Rule], limit: int = 6) -> None:
    groups = todo_groups(findings, rules)
    if not groups:
        return
    out.print("\n[bold]What to do[/]")
    for todo, names in groups:
        shown = ", ".join(visible(n) for n in names[:limit])
        more = f" and {len(names) - limit} more" if len(names) > limit else ""
        line = Text.assemble(("• ", "bold"), (visible(todo), "bold"), f" ({len(names)}): ")
        line.append(shown + more)
        out.print(line, soft_wrap=False)


DEMO_ADMIN = "demo-admin"


def serve_demo(uris: list[str], policy: Path, db_url: str, listen: str, *, enforce: bool) -> None:
    """Serve the API and dashboard over the demo store, as `vmwarden serve` would.

    The demo admin's token is minted anew on every run (rotated when the user exists), printed
    once, and kept only as a hash: the same rules as `vmwarden user add`.
    """
    import uvicorn

    from vmwarden.api import Settings, create_app
    from vmwarden.api.tokens import mint
    from vmwarden.store import Store
    from vmwarden.store.users import UsersRepo

    host, port = parse_listen(listen)
    token, token_id, token_hash = mint()
    store = Store.open(db_url)
    try:
        users = UsersRepo(store)
        if users.get_user(DEMO_ADMIN) is None:
            users.add_user(DEMO_ADMIN, "admin", token_id, token_hash, actor="demo", reason="demo")
        else:
            users.rotate_token(DEMO_ADMIN, token_id, token_hash, actor="demo", reason="demo")
        settings = Settings(db_url=db_url, policy_path=policy, uris=tuple(uris), web=True)
        app = create_app(settings, store=store)
        out.print(f"\n[bold]Dashboard[/] http://{listen}/  (API under /api)", highlight=False)
        out.print(f"Sign in as {DEMO_ADMIN} (admin) with this token, shown once:")
        print(token, flush=True)
        if not enforce:
            out.print("[dim]The quarantine queue is empty: add --enforce to fill it.[/]")
        uvicorn.run(
            app, host=host, port=port, log_level="warning", server_header=False, proxy_headers=False
        )
    finally:
        store.close()

"""Entry point: a command group that imports a command's module only when that command runs,
and turns vmwarden errors into messages and exit codes.

Why lazy: the commands' modules pull in SQLAlchemy, FastAPI, libvirt and dissect; importing
them all made every call, even ``--help``, cost ~2 s. ``vmwarden --help`` now imports none of
them and ``vmwarden report`` only the store (``make bench`` measures both).

Exit codes: 0 ok; 1 operation failed (an action failed); 2 bad input (policy, URI,
arguments) or unreachable host; 3 ``--fail-on`` threshold met; 130 interrupted (143 on
SIGTERM). When several apply, ``scan`` exits with the most urgent: 130 > 1 > 2 > 3 (see
``engine.result.ScanResult.exit_code``): a failed quarantine never hides behind ``--fail-on``.
"""

from __future__ import annotations

import importlib
import logging
import sys
from typing import TYPE_CHECKING

import typer
import typer.core

if TYPE_CHECKING:  # typer carries its own click
    from typer._click import Command, Context, HelpFormatter

# name: (module under vmwarden.cli, its register function, the one-line help of the listing).
# tests/cli/test_cli_startup.py checks each line is the command's own help, so they cannot drift.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "scan": ("scan", "register", "One sweep: inventory, disk inspection, evaluation and..."),
    "report": ("report", "register_report", "Findings, VMs, images, a VM's history or the..."),
    "quarantine": ("admin", "register", "Move every NIC of a VM to the quarantine network..."),
    "release": ("admin", "register", "Restore exactly what quarantine changed: each NIC's..."),
    "inspect": ("admin", "register", "Offline facts of one disk image as JSON: format,..."),
    "demo": ("demo", "register", "Build a demo estate (4 test-driver hosts, 50+ VMs, real..."),
    "serve": ("serve", "register", "Serve the API under /api (OpenAPI at..."),
    "watch": ("watch", "register", "Continuous monitor: events, power-on gate,..."),
    "template": ("admin", "register", "The approved template catalog."),
    "hook": ("hook", "register", "The libvirt qemu hook through which `watch` admits or..."),
    "user": ("users", "register", "API and dashboard users: auditor (read), operator (+..."),
    "benchmark": ("benchmark", "register", "Evaluate an SCAP benchmark (XCCDF + OVAL) on a..."),
    "worker": ("worker", "register", "A Dask worker on a hypervisor or storage host: the..."),
}


def load_command(name: str) -> Command | None:
    """The click command ``name``, built from its module's ``register`` on a private app."""
    if name not in COMMANDS:
        return None
    module, register, _ = COMMANDS[name]
    sub = typer.Typer(rich_markup_mode=None, add_completion=False)
    getattr(importlib.import_module(f"vmwarden.cli.{module}"), register)(sub)
    built = typer.main.get_command(sub)
    commands = getattr(built, "commands", None)  # a group when the module made several
    if commands is not None:
        return commands.get(name)
    return built if built.name == name else None


class LazyGroup(typer.core.TyperGroup):
    """Lists commands from ``COMMANDS`` and imports one only when it is asked for."""

    def list_commands(self, ctx: Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        return load_command(cmd_name)

    def format_commands(self, ctx: Context, formatter: HelpFormatter) -> None:
        rows = [(name, short) for name, (_, _, short) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


app = typer.Typer(
    name="vmwarden",
    cls=LazyGroup,
    help="Find every VM and disk image, judge them against a policy, quarantine and release.",
    epilog="Example: vmwarden demo, then vmwarden scan -c qemu:///system -p policy.yaml",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # click's own help, not Rich panels: at 80 columns Rich cut option names ("--inspect-timeo…")
    rich_markup_mode=None,
)


@app.callback()
def _root() -> None:
    """Find every VM and disk image, judge them against a policy, quarantine and release."""


class ShownFormatter(logging.Formatter):
    """Log messages carry VM, image and host names: their control characters are shown
    (``vmwarden.model.escape``), so a name cannot clear the terminal or forge a second log
    line; tracebacks keep their lines. The escaper is imported at the first record, not at
    start-up (``--help`` stays fast)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        from vmwarden.model.escape import visible

        return visible(super().formatMessage(record))


def main() -> None:
    from vmwarden.errors import VmwardenError

    handler = logging.StreamHandler()
    handler.setFormatter(ShownFormatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    try:
        app(standalone_mode=True)
    except VmwardenError as exc:
        from rich.text import Text

        from vmwarden.cli.common import err
        from vmwarden.model.escape import visible

        # soft_wrap: one message is one line, whatever the terminal width (scripts grep it)
        # names in messages come from guests and domains: shown, never run as markup/escapes
        err.print(Text.assemble(("error:", "bold red"), " ", visible(str(exc))), soft_wrap=True)
        if exc.hint:
            err.print(Text.assemble(("hint:", "dim"), " ", visible(exc.hint)), soft_wrap=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()

"""Entry point: builds the Typer app and turns vmwarden errors into messages and exit codes.

Exit codes: 0 ok; 1 operation failed; 2 bad input (policy, URI, arguments) or unreachable
host; 3 ``--fail-on`` threshold met.
"""

from __future__ import annotations

import logging
import sys

import typer

from vmwarden.cli import admin, demo, hook, scan, serve, users, watch
from vmwarden.cli.common import err
from vmwarden.errors import VmwardenError

app = typer.Typer(
    name="vmwarden",
    help="Find every VM and disk image, judge them against a policy, quarantine and release.",
    epilog="Example: vmwarden demo, then vmwarden scan -c qemu:///system -p policy.yaml",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
scan.register(app)
admin.register(app)
demo.register(app)
hook.register(app)
serve.register(app)
users.register(app)
watch.register(app)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app(standalone_mode=True)
    except VmwardenError as exc:
        # soft_wrap: one message is one line, whatever the terminal width (scripts grep it)
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        if exc.hint:
            err.print(f"[dim]hint:[/] {exc.hint}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()

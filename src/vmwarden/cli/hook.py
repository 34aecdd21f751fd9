"""``vmwarden hook install|uninstall|status``: the hook of the power-on gate.

The hook belongs to the platform whose hypervisor runs on this machine and asks before each
VM start (libvirt's qemu hook, ``connectors/libvirt/hook_*``); this command reaches it
through the neutral start-hook capability (``connectors.capabilities.start_hook``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from vmwarden.cli.common import err, out
from vmwarden.connectors.capabilities import StartHookState, start_hook
from vmwarden.engine.admission import DEFAULT_SOCKET
from vmwarden.policy import load_policy

hooks = start_hook()

_EXAMPLE = "Example: vmwarden hook install -p policy.yaml --reload-libvirtd; vmwarden hook status"

SocketOpt = Annotated[
    str,
    typer.Option("--socket", help="The admission socket `vmwarden watch` listens on."),
]
DropInOpt = Annotated[
    bool,
    typer.Option(
        "--drop-in",
        help=f"Use {hooks.DROP_IN} (beside another tool's {hooks.MAIN_HOOK}; libvirt >= 6.5).",
    ),
]
ReloadOpt = Annotated[
    bool,
    typer.Option(
        "--reload-libvirtd",
        help="Signal libvirtd (SIGHUP) to look for hooks again; nothing stops.",
    ),
]
RestartOpt = Annotated[
    bool,
    typer.Option(
        "--restart-libvirtd",
        help="Restart libvirtd so it notices a new hook (running VMs keep running).",
    ),
]


def _path(drop_in: bool) -> Path:
    return hooks.DROP_IN if drop_in else hooks.MAIN_HOOK


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        help="The libvirt qemu hook through which `watch` admits or refuses a VM at start-up.",
        epilog=_EXAMPLE,
        no_args_is_help=True,
    )
    app.add_typer(group, name="hook")

    @group.command("install", epilog=_EXAMPLE)
    def install_cmd(
        socket: SocketOpt = DEFAULT_SOCKET,
        unreachable: Annotated[
            str | None,
            typer.Option(
                "--unreachable",
                help="allow|deny a start when `watch` cannot be reached "
                "(default: the policy's gate.unreachable, else allow). Logged either way.",
                show_default=False,
            ),
        ] = None,
        policy: Annotated[
            Path | None,
            typer.Option("-p", "--policy", help="Policy whose gate.unreachable is the default."),
        ] = None,
        only: Annotated[
            str | None,
            typer.Option(
                "--only",
                help="Gate only VMs whose name matches this shell glob (a staged roll-out).",
                show_default=False,
            ),
        ] = None,
        drop_in: DropInOpt = False,
        reload_libvirtd: ReloadOpt = False,
        restart_libvirtd: RestartOpt = False,
        log: Annotated[
            str, typer.Option("--log", help="Where the hook logs (besides syslog).")
        ] = hooks.DEFAULT_LOG,
        python: Annotated[
            str,
            typer.Option(
                "--python",
                help="The interpreter the hook runs as root (must be root's end to end; "
                "standard library only is needed).",
            ),
        ] = hooks.SYSTEM_PYTHON,
    ) -> None:
        """Install /etc/libvirt/hooks/qemu: at each VM start, ask `watch` to allow or deny it."""
        if unreachable is None:
            unreachable = load_policy(policy).gate.unreachable if policy else "allow"
        path = _path(drop_in)
        replaced = hooks.install(
            socket=socket, unreachable=unreachable, path=path, log=log, only=only, python=python
        )
        out.print(
            f"{'updated' if replaced else 'installed'} {path} "
            f"(socket {socket}, unreachable: {unreachable})",
            highlight=False,
            soft_wrap=True,
        )
        if restart_libvirtd:
            hooks.restart_daemon()
            out.print("libvirtd restarted: the hook is active", highlight=False)
        elif reload_libvirtd:
            hooks.reload_daemon()
            out.print("libvirtd reloaded: the hook is active", highlight=False)
        elif not replaced:
            err.print(
                "[yellow]note:[/] libvirtd looks for hooks when it starts or reloads: run "
                "vmwarden hook install --reload-libvirtd (SIGHUP; nothing stops), or restart "
                "libvirtd (--restart-libvirtd; running VMs keep running)",
                highlight=False,
                soft_wrap=True,
            )

    @group.command("uninstall", epilog="Example: vmwarden hook uninstall --restart-libvirtd")
    def uninstall_cmd(drop_in: DropInOpt = False, restart_libvirtd: RestartOpt = False) -> None:
        """Remove the hook vmwarden installed (a hook it did not write is left alone).

        Takes effect at once: libvirtd runs the hook by path, and a missing one is not run.
        """
        path = _path(drop_in)
        if hooks.uninstall(path):
            out.print(f"removed {path}", highlight=False)
        else:
            out.print(f"no hook at {path}; nothing to do", highlight=False)
        if restart_libvirtd:
            hooks.restart_daemon()
            out.print("libvirtd restarted", highlight=False)

    @group.command("status", epilog="Example: vmwarden hook status")
    def status_cmd(drop_in: DropInOpt = False) -> None:
        """Whether the hook is installed, with what settings, whether libvirtd uses it (it
        started after the hook was written, or vmwarden reloaded it since), and whether
        everything it runs is still root's."""
        st = hooks.status(_path(drop_in))
        if not st.exists:
            out.print(f"{st.path}: not installed", highlight=False)
            raise typer.Exit(1)
        if not st.ours:
            out.print(f"{st.path}: present, not vmwarden's", highlight=False)
            raise typer.Exit(1)
        _show_status(st)


def _ping(path: str) -> str:
    from vmwarden.engine.admission import PING

    try:
        answer = hooks.ask(path, PING, timeout=2.0)
    except hooks.Unreachable as exc:
        return f"unreachable ({exc})"
    return "answering" if answer.get("reason") == "pong" else f"answered {answer}"


def _show_status(st: StartHookState) -> None:
    """The settings of our hook, whether libvirtd runs it, and whether it is root's."""
    settings = ", ".join(f"{k} {v}" for k, v in st.settings.items())
    out.print(f"{st.path}: vmwarden hook ({settings})", highlight=False, soft_wrap=True)
    if st.libvirtd_pid is None:
        out.print("libvirtd: not running", highlight=False)
    elif st.libvirtd_sees_it:
        out.print(
            f"libvirtd (pid {st.libvirtd_pid}): uses the hook ({st.why})",
            highlight=False,
            soft_wrap=True,
        )
    else:
        out.print(
            f"libvirtd (pid {st.libvirtd_pid}): started before the hook was written and "
            "not reloaded by vmwarden since; it uses the hook only if reloaded or restarted "
            "since (or a qemu hook was already there): vmwarden hook install "
            "--reload-libvirtd",
            highlight=False,
            soft_wrap=True,
        )
    if st.unsafe:
        err.print(f"[red]unsafe:[/] {escape(st.unsafe)}", highlight=False, soft_wrap=True)
    sock = st.settings.get("socket")
    if sock:
        out.print(f"admission service: {_ping(sock)}", highlight=False, soft_wrap=True)
    if st.unsafe:
        raise typer.Exit(1)

"""Manual enforcement and catalog commands: quarantine, release, template, inspect."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from vmwarden.cli.common import ActorOpt, DbOpt, actor_name, open_store, out
from vmwarden.cli.inspect_disk import default_uri, inspect_served, served_by
from vmwarden.cli.report import register_report
from vmwarden.connectors import open_connector
from vmwarden.enforce import Quarantiner, QuarantineSpec
from vmwarden.engine.content_lineage import FINGERPRINT_KEY, lineage_note, sign_for_approval
from vmwarden.errors import EnforceError
from vmwarden.inspect.chain import resolve_chain
from vmwarden.inspect.digest import digest_file, fingerprint
from vmwarden.inspect.facts import inspect_image_json
from vmwarden.model.escape import visible
from vmwarden.policy import load_policy

_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # needs no quotes in YAML
_APPROVE_EXAMPLE = (
    "Example: vmwarden template approve /var/lib/libvirt/images/debian12.qcow2 --name debian12-base"
)
UriOne = Annotated[
    str | None,
    typer.Option(
        "-c",
        "--connect",
        help="libvirt URI of the VM's host (default: where the last scan saw it).",
        show_default=False,
    ),
]


def _uri_for(store: object, vm: str, given: str | None) -> str:
    if given:
        return given
    record = store.get_vm(vm)  # type: ignore[attr-defined]
    if record is None:
        raise EnforceError(
            f"VM {vm!r} is not in the store", hint="pass -c URI, or run a scan first"
        )
    return record["uri"]


def _outcome(verb: str, name: str, rec: Any) -> Text:
    """``quarantine web01: done (journal #3)``; the VM name as text, never as Rich markup."""
    return Text.assemble(
        f"{verb} ", visible(name), ": ", (rec.status, "bold"), f" (journal #{rec.journal_id})"
    )


def _print_approved(name: str, digest: str, lineage: str = "") -> None:
    """The approval and its policy snippet. The name is text, never Rich markup (``--name
    'x[/]'`` raised MarkupError after approving), and YAML-quoted in the snippet when needed.
    soft_wrap: a digest broken over two lines could not be pasted into a policy."""
    out.print(Text.assemble("approved ", (visible(name), "bold"), f" {digest}"), soft_wrap=True)
    snippet = name if _PLAIN_NAME.fullmatch(name) else json.dumps(name)
    out.print(
        Text(f"policy snippet:\n  templates:\n    - name: {snippet}\n      digest: {digest}"),
        soft_wrap=True,
    )
    if lineage:
        out.print(Text(lineage), soft_wrap=True)


def register(app: typer.Typer) -> None:
    register_report(app)
    template = typer.Typer(
        help="The approved template catalog.",
        epilog=_APPROVE_EXAMPLE + "; vmwarden template list",
        no_args_is_help=True,
    )
    app.add_typer(template, name="template")

    @app.command(
        epilog="Example: vmwarden quarantine web01 -c qemu:///system -p policy.yaml --reason IR-42"
    )
    def quarantine(
        vm: Annotated[str, typer.Argument(help="VM name or UUID.")],
        connect: UriOne = None,
        policy: Annotated[
            Path | None, typer.Option("-p", "--policy", help="Policy (for its quarantine: block).")
        ] = None,
        network: Annotated[
            str | None,
            typer.Option(
                "--network",
                help="Quarantine network, vSphere portgroup or EC2 security group "
                "(overrides the policy).",
            ),
        ] = None,
        reason: Annotated[
            str, typer.Option("--reason", help="Why, for the audit log.")
        ] = "manual quarantine",
        db: DbOpt = None,
        actor: ActorOpt = None,
    ) -> None:
        """Move every NIC of a VM to the quarantine network with link down (live and persistent).

        On vSphere: every NIC to the quarantine portgroup, disconnected and not connected
        at power-on. On EC2: every ENI's security groups replaced by the quarantine group of
        its VPC (created with no rules when absent)."""
        spec = _spec(policy, network)
        with open_store(db) as store:
            uri = _uri_for(store, vm, connect)
            with open_connector(uri) as conn:
                target = conn.lookup(vm)
                rec = Quarantiner(store, actor_name(actor)).quarantine(
                    conn, target, spec, reason=reason, rule=None
                )
        out.print(_outcome("quarantine", target.name, rec))
        if rec.error:
            out.print(Text(visible(rec.error), style="yellow"))

    @app.command(epilog="Example: vmwarden release web01 --reason 'rebuilt from debian12-base'")
    def release(
        vm: Annotated[str, typer.Argument(help="VM name or UUID.")],
        reason: Annotated[
            str, typer.Option("--reason", help="What was fixed (required, for the audit log).")
        ],
        connect: UriOne = None,
        force: Annotated[
            bool,
            typer.Option(
                "--force",
                help="Put back the pre-quarantine NICs even over changes made during quarantine.",
            ),
        ] = False,
        keep_changes: Annotated[
            bool,
            typer.Option(
                "--keep-changes",
                help="Keep NICs changed during quarantine (raising the link quarantine took "
                "down); restore the rest.",
            ),
        ] = False,
        db: DbOpt = None,
        actor: ActorOpt = None,
    ) -> None:
        """Restore exactly what quarantine changed: each NIC's network and link state.

        A NIC someone changed during quarantine (say, its persistent config moved to the
        right network) is never overwritten silently: release lists the changes, changes
        nothing and exits 1, until --keep-changes or --force says what to do."""
        if not reason.strip():
            raise typer.BadParameter("say what was fixed, for the audit log", param_hint="--reason")
        with open_store(db) as store:
            uri = _uri_for(store, vm, connect)
            with open_connector(uri) as conn:
                target = conn.lookup(vm)
                if store.active_quarantine(target.id) is None:  # say it by the name typed
                    raise EnforceError(
                        f"VM {target.name} is not quarantined by vmwarden; nothing to release"
                    )
                rec = Quarantiner(store, actor_name(actor)).release(
                    conn, target.id, reason=reason, force=force, keep_changes=keep_changes
                )
        out.print(_outcome("release", target.name, rec))
        verb = "overwritten (--force)" if force else "kept (--keep-changes)"
        for change in rec.changes.get("changed_during_quarantine") or ():
            out.print(Text.assemble(f"{verb}: ", visible(change)), soft_wrap=True)
        if rec.error:
            out.print(Text(visible(rec.error), style="yellow"))
            raise typer.Exit(1)

    @template.command("approve", epilog=_APPROVE_EXAMPLE)
    def approve(
        image: Annotated[
            Path, typer.Argument(help="Template image file.", exists=True, dir_okay=False)
        ],
        name: Annotated[str, typer.Option("--name", help="Catalog name.")],
        db: DbOpt = None,
        actor: ActorOpt = None,
    ) -> None:
        """Add an image to the approved catalog (records its digest and fingerprint)."""
        digest = digest_file(image)
        # the content lineage signature identifies full clones of it (engine.content_lineage)
        fp = {**fingerprint(image), FINGERPRINT_KEY: sign_for_approval(image)}
        with open_store(db) as store:
            store.approve_template(name, digest, str(image.resolve()), fp, actor_name(actor))
        _print_approved(name, digest, lineage_note(fp[FINGERPRINT_KEY]))

    @template.command("list", epilog="Example: vmwarden template list --db sqlite:///vmwarden.db")
    def list_templates(db: DbOpt = None) -> None:
        """The catalog as recorded by `template approve`."""
        with open_store(db) as store:
            rows = store.templates()
        for t in rows:  # tab-separated, one per line, unwrapped: for people and for cut(1)
            print(f"{visible(t['name'])}\t{t['digest']}\t{visible(t.get('path') or '')}")

    _register_inspect(app)


def _register_inspect(app: typer.Typer) -> None:
    """`vmwarden inspect`: one disk image, or a disk served by a connection (ebs:snap-…)."""

    @app.command(
        epilog="Example: vmwarden inspect /var/lib/libvirt/images/web01.qcow2 "
        "--allow-dir /var/lib/libvirt/images/templates; "
        "vmwarden inspect ebs:snap-0123456789abcdef0 -c aws://us-east-1"
    )
    def inspect(
        image: Annotated[
            str,
            typer.Argument(
                help="Disk image file, or an EBS snapshot as ebs:snap-… (read through the "
                "EBS direct APIs; region from --connect aws://REGION or AWS_REGION)."
            ),
        ],
        connect: Annotated[
            str | None,
            typer.Option(
                "-c",
                "--connect",
                help="Connection serving a disk that is no file here (aws://REGION for ebs:).",
                show_default=False,
            ),
        ] = None,
        allow_dir: Annotated[
            list[Path] | None,
            typer.Option(
                "--allow-dir",
                help="Directory backing files may be read from (repeatable); the image's own "
                "directory always is. A backing file elsewhere is named, never opened.",
                show_default=False,
            ),
        ] = None,
        timeout: Annotated[
            float, typer.Option("--timeout", help="Seconds before giving up.")
        ] = 60.0,
    ) -> None:
        """Offline facts of one disk image as JSON: format, chain, digest, and what is inside.

        The guest (OS, packages, users, services, sshd, host keys, time sync) is read in a
        sandboxed worker; nothing from the image is run or mounted."""
        scheme = served_by(image)
        if scheme is not None:
            facts = inspect_served(image, connect or default_uri(scheme), timeout=timeout)
            print(json.dumps(facts, indent=2, default=str))
            return
        path = Path(image)
        if not path.is_file():
            raise typer.BadParameter(f"no disk image file {image!r}", param_hint="IMAGE")
        allowed = [path.resolve().parent, *(allow_dir or [])]
        facts = inspect_image_json(path, allowed_dirs=allowed, timeout=timeout)
        facts["chain"] = [
            {"path": layer.path, "format": layer.format, "type": layer.type, "error": layer.error}
            for layer in resolve_chain(path, allowed_dirs=allowed)
        ]
        print(json.dumps(facts, indent=2, default=str))


def _spec(policy: Path | None, network: str | None) -> QuarantineSpec:
    if network:  # the one name typed serves the VM's platform, whichever it is
        return QuarantineSpec(
            network=network, vsphere_portgroup=network, aws_security_group=network
        )
    if policy is None:
        raise EnforceError("no quarantine network given", hint="pass -p POLICY or --network NAME")
    q = load_policy(policy).quarantine
    if q is None:
        raise EnforceError(
            f"{policy} has no quarantine: block",
            hint="add quarantine: {network: NAME} or pass --network",
        )
    return q.spec()

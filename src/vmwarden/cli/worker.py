"""``vmwarden worker``: read this host's disks for sweeps that use a Dask scheduler; and the
``--scheduler`` options that ``scan`` and ``watch`` share."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from vmwarden.engine.executor import DiskExecutor, InProcess

SchedulerOpt = Annotated[
    str | None,
    typer.Option(
        "--scheduler",
        help="Dask scheduler (tls://HOST:PORT): hosts running `vmwarden worker` read their "
        "own disks. Client certificate from Dask's config (DASK_DISTRIBUTED__COMM__TLS__*).",
        show_default=False,
    ),
]
SchedulerInsecureOpt = Annotated[
    bool,
    typer.Option(
        "--scheduler-insecure",
        help="Allow a tcp:// scheduler without TLS (a lab only).",
    ),
]


@contextlib.contextmanager
def disk_executor(address: str | None, *, insecure: bool = False) -> Iterator[DiskExecutor]:
    """In-process reads without ``address``; else the cluster's, closed afterwards."""
    if not address:
        yield InProcess()
        return
    from vmwarden.distributed.executor import DaskDisks
    from vmwarden.distributed.security import client_security

    executor = DaskDisks(address, client_security(address, insecure=insecure))
    try:
        yield executor
    finally:
        executor.close()


def register(app: typer.Typer) -> None:
    @app.command(
        epilog="Example: vmwarden worker --scheduler tls://master:8786 --host hv1 "
        "--storage /var/lib/libvirt/images --tls-ca-file ca.pem --tls-cert hv1.pem "
        "--tls-key hv1.key"
    )
    def worker(
        scheduler: Annotated[
            str, typer.Option("--scheduler", help="The Dask scheduler (tls://HOST:PORT).")
        ],
        host: Annotated[
            str,
            typer.Option("--host", help="This hypervisor host's name, as sweeps name it."),
        ],
        storage: Annotated[
            list[Path],
            typer.Option(
                "--storage",
                help="A directory of this host's disk images (repeatable); nothing else is read.",
            ),
        ],
        tls_ca_file: Annotated[
            Path | None, typer.Option("--tls-ca-file", help="CA certificate (PEM).")
        ] = None,
        tls_cert: Annotated[
            Path | None, typer.Option("--tls-cert", help="This worker's certificate (PEM).")
        ] = None,
        tls_key: Annotated[
            Path | None, typer.Option("--tls-key", help="This worker's private key (PEM).")
        ] = None,
        insecure: Annotated[
            bool, typer.Option("--insecure", help="Join without TLS (a lab only).")
        ] = False,
        slots: Annotated[
            int, typer.Option("--slots", help="Disks read at once (0: the CPUs).")
        ] = 0,
        listen: Annotated[
            str | None,
            typer.Option(
                "--listen",
                help="Host or IP the others reach this worker at (default: the interface "
                "that routes to the scheduler).",
                show_default=False,
            ),
        ] = None,
        death_timeout: Annotated[
            float,
            typer.Option(
                "--death-timeout", help="Exit after this many seconds without a scheduler."
            ),
        ] = 60.0,
    ) -> None:
        """A Dask worker on a hypervisor or storage host: the disk reads of its VMs run here."""
        from vmwarden.distributed.security import tls_files
        from vmwarden.distributed.worker import WorkerConfig, run_worker

        config = WorkerConfig(
            scheduler=scheduler,
            host=host,
            storage=list(storage),
            tls=tls_files(tls_ca_file, tls_cert, tls_key),
            insecure=insecure,
            slots=slots,
            death_timeout=death_timeout,
            listen=listen,
        )
        raise typer.Exit(run_worker(config))

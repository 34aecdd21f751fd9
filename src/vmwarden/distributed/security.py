"""TLS with client certificates between scheduler, workers and clients (Dask ``Security``).

Why refuse plain TCP: a worker runs vmwarden's inspector over the host's disks, and a client
can submit tasks to it; without mutual TLS anyone who reaches the scheduler's port could do
both. ``--insecure`` exists for a lab and must be asked for by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vmwarden.errors import ClusterError

TLS_HINT = (
    "give --tls-ca-file, --tls-cert and --tls-key (PEM; the certificate signed by the "
    "cluster's CA) and a tls:// scheduler address, or --insecure for a lab cluster"
)


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """The PEM files of one cluster member: the CA that signs every member, and its own."""

    ca: Path
    cert: Path
    key: Path


def tls_files(ca: Path | None, cert: Path | None, key: Path | None) -> TlsFiles | None:
    """The three files, all given and readable, or None when none is given."""
    given = [p for p in (ca, cert, key) if p is not None]
    if not given:
        return None
    if len(given) != 3:
        raise ClusterError("TLS needs all three of the CA, certificate and key", hint=TLS_HINT)
    for path in given:
        if not path.is_file():
            raise ClusterError(f"TLS file not found: {path}", hint=TLS_HINT)
    assert ca is not None and cert is not None and key is not None
    return TlsFiles(ca, cert, key)


def cluster_security(address: str, tls: TlsFiles | None, *, insecure: bool) -> object:
    """The ``distributed.Security`` for a member talking to the scheduler at ``address``.

    Raises:
        ClusterError: no TLS and not ``insecure``, or TLS files with a non-``tls://``
            address (the certificates would silently go unused).
    """
    from distributed.security import Security

    scheme = address.split("://", 1)[0] if "://" in address else "tcp"
    if tls is None:
        if not insecure:
            raise ClusterError(
                f"refusing to join {address} without TLS: the cluster's members must "
                "authenticate each other with certificates",
                hint=TLS_HINT,
            )
        return Security(require_encryption=False)
    if scheme != "tls":
        raise ClusterError(
            f"scheduler address {address} is not tls://, so the certificates would go unused",
            hint="use tls://HOST:PORT (the scheduler started with --tls-ca-file/--tls-cert)",
        )
    ca, cert, key = str(tls.ca), str(tls.cert), str(tls.key)
    return Security(
        require_encryption=True,
        tls_ca_file=ca,
        tls_client_cert=cert,
        tls_client_key=key,
        tls_worker_cert=cert,
        tls_worker_key=key,
    )


def client_security(address: str, *, insecure: bool) -> object:
    """The ``Security`` of ``scan``/``watch --scheduler``: the client certificate from Dask's
    own configuration (``distributed.comm.tls.ca-file``, ``.client.cert``, ``.client.key``,
    e.g. ``DASK_DISTRIBUTED__COMM__TLS__CA_FILE``), as every Dask client reads it."""
    import dask.config

    def get(name: str) -> Path | None:
        value = dask.config.get(f"distributed.comm.tls.{name}", default=None)
        return Path(value) if value else None

    tls = None
    if address.startswith("tls://"):
        files = (get("ca-file"), get("client.cert"), get("client.key"))
        if None in files:
            raise ClusterError(
                f"{address} needs this client's certificate",
                hint="set DASK_DISTRIBUTED__COMM__TLS__CA_FILE, ..._TLS__CLIENT__CERT and "
                "..._TLS__CLIENT__KEY (or the same keys in a Dask config file)",
            )
        tls = tls_files(*files)
    return cluster_security(address, tls, insecure=insecure)

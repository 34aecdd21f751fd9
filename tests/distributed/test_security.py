"""The cluster's members authenticate each other: TLS with certificates of the cluster's CA.

A worker that will not use TLS refuses to start; one that tries without TLS, or with a
certificate from another CA, is refused by the TLS scheduler and never gets a disk task."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from tests.distributed.conftest import HOSTS, Certs, Cluster
from vmwarden.distributed.placement import hosts_up
from vmwarden.distributed.security import (
    TlsFiles,
    client_security,
    cluster_security,
    tls_files,
)
from vmwarden.errors import ClusterError

#: A refused worker gives up after --death-timeout (15 s in ``worker_command``).
REFUSED_WITHIN = 90


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=REFUSED_WITHIN)


def _joined(cluster: Cluster) -> dict[str, list[str]]:
    with cluster.client() as client:
        return hosts_up(client.scheduler_info(n_workers=-1))


def test_vmwarden_worker_without_tls_refuses_to_start(cluster: Cluster) -> None:
    done = _run(cluster.worker_command("host-a", tls=False))
    assert done.returncode != 0
    assert "refusing to join" in done.stderr and "--insecure" in done.stderr


def test_a_worker_without_tls_is_refused_by_the_tls_scheduler(cluster: Cluster) -> None:
    plain = cluster.address.replace("tls://", "tcp://")
    cmd = cluster.worker_command("vmw-d-intruder", "--insecure", tls=False)
    cmd[cmd.index(cluster.address)] = plain
    done = _run(cmd)
    assert done.returncode != 0
    assert "cannot join the scheduler" in done.stderr
    assert "vmw-d-intruder" not in _joined(cluster)


def test_a_worker_with_another_cas_certificate_is_refused(cluster: Cluster) -> None:
    cmd = cluster.worker_command("vmw-d-intruder", tls=False)
    cmd += ["--tls-ca-file", str(cluster.certs.ca), "--tls-cert", str(cluster.certs.rogue_cert)]
    cmd += ["--tls-key", str(cluster.certs.rogue_key)]
    done = _run(cmd)
    assert done.returncode != 0
    assert "cannot join the scheduler" in done.stderr
    joined = _joined(cluster)
    assert "vmw-d-intruder" not in joined
    assert set(HOSTS) <= set(joined)  # the members are still there


def test_a_worker_refuses_a_missing_storage_directory(cluster: Cluster, tmp_path: Path) -> None:
    cmd = cluster.worker_command("host-a")
    cmd[cmd.index("--storage") + 1] = str(tmp_path / "absent")
    done = _run(cmd)
    assert done.returncode != 0
    assert "storage directory not found" in done.stderr


def test_a_client_refuses_plain_tcp_unless_told_and_needs_all_three_tls_files(
    tmp_path: Path,
) -> None:
    with pytest.raises(ClusterError, match="without TLS"):
        client_security("tcp://127.0.0.1:8786", insecure=False)
    assert client_security("tcp://127.0.0.1:8786", insecure=True) is not None
    with pytest.raises(ClusterError, match="all three"):
        tls_files(tmp_path / "ca.pem", None, None)
    with pytest.raises(ClusterError, match="client's certificate"):
        client_security("tls://127.0.0.1:8786", insecure=False)  # none configured here
    with pytest.raises(ClusterError, match="not tls://"):
        cert = tmp_path / "x.pem"
        cert.write_text("x")
        cluster_security("tcp://127.0.0.1:8786", tls_files(cert, cert, cert), insecure=False)


def test_a_scheduler_that_cannot_be_reached_is_one_clear_error(certs: Certs) -> None:
    from vmwarden.distributed.executor import DaskDisks

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        address = f"tls://127.0.0.1:{s.getsockname()[1]}"
    security = cluster_security(address, TlsFiles(certs.ca, certs.cert, certs.key), insecure=False)
    with pytest.raises(ClusterError, match="cannot reach the Dask scheduler") as caught:
        DaskDisks(address, security, timeout=3)
    assert caught.value.hint and "TLS" in caught.value.hint

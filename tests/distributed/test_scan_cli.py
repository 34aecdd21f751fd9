"""``vmwarden scan --scheduler`` as an operator runs it: the client certificate from Dask's
configuration (environment), JSON ``disk_reads`` per host, the table's "Disk reads" line."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.distributed.conftest import HOSTS, VENV_BIN, Cluster, Estate


def _scan(estate: Estate, cluster: Cluster, tmp_path: Path, *extra: str, tls: bool = True):  # type: ignore[no-untyped-def]
    policy = tmp_path / "policy.yaml"
    policy.write_text(estate.policy)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_")}
    if tls:
        env["DASK_DISTRIBUTED__COMM__TLS__CA_FILE"] = str(cluster.certs.ca)
        env["DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT"] = str(cluster.certs.cert)
        env["DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY"] = str(cluster.certs.key)
    cmd = [str(VENV_BIN / "vmwarden"), "scan", "-p", str(policy), "--db"]
    cmd += [f"sqlite:///{tmp_path / 'db.sqlite'}", "--scheduler", cluster.address]
    for uri in estate.uris:
        cmd += ["-c", uri]
    return subprocess.run(
        [*cmd, *extra], check=False, capture_output=True, text=True, env=env, timeout=300
    )


def test_scan_with_a_scheduler_says_per_host_how_disks_were_read(
    estate: Estate, cluster: Cluster, tmp_path: Path
) -> None:
    done = _scan(estate, cluster, tmp_path, "--format", "json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["disk_reads"] == dict.fromkeys(HOSTS, "worker")
    assert {f["rule"] for f in result["findings"]} == {
        "unapproved",
        "shared-host-key",
        "stale-openssl",
        "stale-forgotten",
    }
    table = _scan(estate, cluster, tmp_path)
    assert "Disk reads: host-a worker, host-b worker, host-c worker" in table.stdout


def test_scan_without_the_client_certificate_refuses_before_reading(
    estate: Estate, cluster: Cluster, tmp_path: Path
) -> None:
    done = _scan(estate, cluster, tmp_path, "--format", "json", tls=False)
    assert done.returncode != 0
    assert "needs this client's certificate" in done.stderr
    assert "DASK_DISTRIBUTED__COMM__TLS__CA_FILE" in done.stderr
    assert not done.stdout.strip()  # no result that could read as a clean run

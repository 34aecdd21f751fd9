"""moto's real HTTP server, driven by real boto3 clients (never ``mock_aws`` in-process).

One ``ThreadedMotoServer`` per session on a free loopback port; ``POST /moto-api/reset``
before each test so no test sees another's instances. The endpoint and fake credentials
are set in the environment of the test only (``monkeypatch``), as boto3 reads them through
its standard chain; nothing here reaches AWS.
"""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """The URL of a moto server running for the whole session."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> str:
    """A clean moto account and an environment whose boto3 chain reaches it."""
    req = urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200
    for var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    # No ~/.aws of the machine's: config and credentials files point into the test's dir.
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIATESTTESTTESTTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret-do-not-log")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # the scan-snapshot journal (connectors.aws.scan_snapshots) under the test's directory
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return moto_endpoint


@pytest.fixture
def ec2(aws_env: str) -> Any:
    """A real boto3 EC2 client for us-east-1 against the moto server."""
    import boto3

    return boto3.client("ec2", region_name="us-east-1")


# The Debian disk in an EBS snapshot (written through the EBS direct APIs), for every EC2 test.
from tests.connectors.aws.snapshot_fixture import debian_raw, debian_snapshot  # noqa: E402, F401

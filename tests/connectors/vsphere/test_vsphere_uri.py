"""vsphere:// URIs and credentials (#13.1): the password never in the URI, on the command
line or in a message; TLS verified unless insecure=1; one-line errors that exit 2."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from tests.connectors.vsphere.conftest import Vcsim
from vmwarden.connectors.base import open_connector
from vmwarden.connectors.vsphere.connection import VsphereConnector
from vmwarden.connectors.vsphere.uri import PASSWORD_ENV, parse_vsphere_uri
from vmwarden.errors import ConnectorError, UnreachableError

ENV = {PASSWORD_ENV: "s3cret"}


def test_a_full_uri_names_user_host_port_datacenter_and_insecure() -> None:
    t = parse_vsphere_uri("vsphere://ops%40corp@vc.example:8443/DC%201?insecure=1", ENV)
    assert (t.user, t.host, t.port, t.datacenter, t.insecure) == (
        "ops@corp", "vc.example", 8443, "DC 1", True,
    )  # fmt: skip
    assert t.password == "s3cret" and "s3cret" not in repr(t)
    t = parse_vsphere_uri("vsphere://ops@vc.example", ENV)
    assert (t.port, t.datacenter, t.insecure) == (443, None, False)


@pytest.mark.parametrize(
    ("uri", "why"),
    [
        ("vsphere://vc.example", "no user"),
        ("vsphere://ops@", "no host"),
        ("vsphere://ops@vc:notaport", "Port could not be cast"),
        ("vsphere://ops@vc/a/b", "one datacenter"),
        ("vsphere://ops@vc?insecure=maybe", "insecure=maybe"),
        ("vsphere://ops@vc?verify=0", "unknown query key(s) verify"),
    ],
)
def test_a_malformed_uri_is_a_clear_error_that_exits_2(uri: str, why: str) -> None:
    with pytest.raises(ConnectorError, match="invalid vSphere URI") as err:
        parse_vsphere_uri(uri, ENV)
    assert why in str(err.value) and err.value.exit_code == 2


def test_a_password_in_the_uri_is_refused_and_never_echoed() -> None:
    with pytest.raises(ConnectorError) as err:
        parse_vsphere_uri("vsphere://ops:hunter2@vc.example", ENV)
    assert "hunter2" not in str(err.value) and PASSWORD_ENV in str(err.value)


def test_the_password_comes_from_the_environment_or_a_password_file(tmp_path: Path) -> None:
    with pytest.raises(ConnectorError, match="no password") as err:
        parse_vsphere_uri("vsphere://ops@vc.example", {})
    assert err.value.hint and PASSWORD_ENV in err.value.hint
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    t = parse_vsphere_uri(f"vsphere://ops@vc.example?password_file={secret}", ENV)
    assert t.password == "from-file"  # the file named in the URI wins over the environment
    with pytest.raises(ConnectorError, match="cannot read password_file"):
        parse_vsphere_uri(f"vsphere://ops@vc?password_file={tmp_path / 'absent'}", ENV)


def test_vcsim_login_with_the_environments_password(vcsim: Vcsim, vsphere_password: str) -> None:
    with open_connector(vcsim.uri()) as conn:
        assert conn.host == "127.0.0.1"
        assert conn.inventory().vms


def test_a_refused_login_is_a_clear_error_without_the_password(
    vcsim: Vcsim, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "not-the-password")
    with pytest.raises(ConnectorError, match="login refused") as err:
        open_connector(vcsim.uri())
    assert "not-the-password" not in str(err.value) and err.value.exit_code == 2


def test_tls_is_verified_unless_the_uri_says_insecure(vcsim: Vcsim, vsphere_password: str) -> None:
    # vcsim's certificate is self-signed: refused by default, with what to do about it
    with pytest.raises(UnreachableError, match="not trusted") as err:
        open_connector(vcsim.uri(query=""))
    assert err.value.hint and "insecure=1" in err.value.hint


def test_an_unknown_datacenter_is_a_clear_error(vcsim: Vcsim, vsphere_password: str) -> None:
    with open_connector(vcsim.uri(path="/DC0")) as conn:
        assert conn.inventory().vms
    with (
        open_connector(vcsim.uri(path="/NoSuchDC")) as conn,
        pytest.raises(ConnectorError, match="no datacenter 'NoSuchDC'"),
    ):
        conn.inventory()


def test_nothing_listens_is_unreachable(vsphere_password: str) -> None:
    with pytest.raises(UnreachableError, match="cannot connect"):
        open_connector("vsphere://ops@127.0.0.1:1?insecure=1")


def test_a_vcenter_that_never_answers_is_unreachable_within_the_timeout(
    vsphere_password: str,
) -> None:
    """A real socket that accepts and then says nothing (a hung vCenter, a black-holed
    tunnel): the connection gives up, it does not hang the sweep."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(UnreachableError):
            VsphereConnector(f"vsphere://ops@127.0.0.1:{port}?insecure=1", timeout=1.0)
        assert time.monotonic() - started < 10

"""The project's vcsim launcher (tools/vcsim): built from Debian's packages, loopback TLS,
one accepted login — the backend every vSphere test runs against."""

from __future__ import annotations

import socket
import ssl

import pytest
from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim

from tests.connectors.vsphere.conftest import Vcsim


def test_vcsim_serves_tls_on_loopback_and_checks_the_login(vcsim: Vcsim) -> None:
    assert vcsim.host == "127.0.0.1"
    with socket.create_connection((vcsim.host, vcsim.port)) as raw:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with ctx.wrap_socket(raw) as tls:
            assert tls.version() is not None
    si = SmartConnect(
        host=vcsim.host,
        port=vcsim.port,
        user=vcsim.user,
        pwd=vcsim.password,
        disableSslCertValidation=True,
    )
    try:
        assert si.RetrieveContent().about.apiType == "VirtualCenter"
    finally:
        Disconnect(si)
    with pytest.raises(vim.fault.InvalidLogin):
        SmartConnect(
            host=vcsim.host,
            port=vcsim.port,
            user=vcsim.user,
            pwd="wrong",
            disableSslCertValidation=True,
        )

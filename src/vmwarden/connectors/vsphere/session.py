"""Logging in to vCenter with pyvmomi, every failure turned into a one-line error.

pyvmomi is imported here, on first connection, never when the connector registry loads:
commands that never touch vSphere do not pay for (or depend on) the SDK.
"""

from __future__ import annotations

import http.client
import logging
import ssl
from typing import Any

from vmwarden.connectors.vsphere.uri import VsphereTarget
from vmwarden.errors import ConnectorError, UnreachableError

log = logging.getLogger(__name__)

#: The vSphere API version spoken (6.5, served by vCenter 6.5 to 8.x and by vcsim). A fixed
#: version, not pyvmomi's SmartConnect discovery: that fetch has no timeout, so a vCenter
#: that accepts and never answers would hang the sweep.
API_VERSION = "vim.version.version11"


_TLS_HINT = (
    "install the vCenter CA in the system trust store, or add insecure=1 to the URI for "
    "this host (no verification)"
)


def connect(target: VsphereTarget, *, timeout: float = 30.0) -> Any:
    """A logged-in ``ServiceInstance``; raises ``UnreachableError``/``ConnectorError``.

    ``timeout`` bounds every socket operation: a vCenter that accepts the connection and
    never answers must not hang the sweep (pyvmomi's default is no timeout)."""
    from pyVim.connect import Connect
    from pyVmomi import vim

    where = f"{target.host}:{target.port}"
    # An explicit verifying context: without one pyvmomi silently skips verification for
    # localhost/127.0.0.1/::1 — exactly where an SSH tunnel to a remote vCenter ends.
    context = None if target.insecure else ssl.create_default_context()
    try:
        return Connect(
            host=target.host,
            port=target.port,
            user=target.user,
            pwd=target.password,
            disableSslCertValidation=target.insecure,
            sslContext=context,
            httpConnectionTimeout=timeout,
            version=API_VERSION,
        )
    except vim.fault.InvalidLogin:
        raise ConnectorError(
            f"vSphere login refused for {target.user!r} at {where}",
            hint="check the user and VMWARDEN_VSPHERE_PASSWORD / password_file",
        ) from None
    except ssl.SSLCertVerificationError as exc:
        raise UnreachableError(
            f"TLS certificate of {where} not trusted: {exc.verify_message}",
            hint=_TLS_HINT,
        ) from None
    except ssl.SSLError as exc:
        raise UnreachableError(f"TLS to {where} failed: {exc.reason or exc}") from None
    except (OSError, http.client.HTTPException) as exc:
        raise UnreachableError(
            f"cannot connect to vSphere at {where}: {getattr(exc, 'strerror', None) or exc}"
        ) from None
    except vim.fault.VimFault as exc:
        # pyvmomi's Connect wraps transport errors in a HostConnectFault carrying the text
        if "CERTIFICATE_VERIFY_FAILED" in str(exc.msg):
            raise UnreachableError(
                f"TLS certificate of {where} not trusted: {exc.msg}", hint=_TLS_HINT
            ) from None
        if isinstance(exc, vim.fault.HostConnectFault):
            raise UnreachableError(f"cannot connect to vSphere at {where}: {exc.msg}") from None
        raise ConnectorError(f"vSphere login at {where} failed: {exc.msg}") from None


def disconnect(si: Any) -> None:
    """Log out; a dead session has nothing to log out of."""
    from pyVim.connect import Disconnect

    try:
        Disconnect(si)
    except Exception as exc:  # closing a dead connection: nothing left to do
        log.debug("vSphere logout: %s", exc)

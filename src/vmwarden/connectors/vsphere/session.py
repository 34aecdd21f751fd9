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


def connect(target: VsphereTarget, *, timeout: float = 30.0) -> Any:
    """A logged-in ``ServiceInstance``; raises ``UnreachableError``/``ConnectorError``."""
    from pyVim.connect import SmartConnect
    from pyVmomi import vim

    where = f"{target.host}:{target.port}"
    # An explicit verifying context: without one pyvmomi silently skips verification for
    # localhost/127.0.0.1/::1 — exactly where an SSH tunnel to a remote vCenter ends.
    context = None if target.insecure else ssl.create_default_context()
    try:
        return SmartConnect(
            host=target.host,
            port=target.port,
            user=target.user,
            pwd=target.password,
            disableSslCertValidation=target.insecure,
            sslContext=context,
            connectionPoolTimeout=timeout,
        )
    except vim.fault.InvalidLogin:
        raise ConnectorError(
            f"vSphere login refused for {target.user!r} at {where}",
            hint="check the user and VMWARDEN_VSPHERE_PASSWORD / password_file",
        ) from None
    except ssl.SSLCertVerificationError as exc:
        raise UnreachableError(
            f"TLS certificate of {where} not trusted: {exc.verify_message}",
            hint="install the vCenter CA in the system trust store, or add insecure=1 "
            "to the URI for this host (no verification)",
        ) from None
    except ssl.SSLError as exc:
        raise UnreachableError(f"TLS to {where} failed: {exc.reason or exc}") from None
    except (OSError, http.client.HTTPException) as exc:
        raise UnreachableError(
            f"cannot connect to vSphere at {where}: {getattr(exc, 'strerror', None) or exc}"
        ) from None
    except vim.fault.VimFault as exc:
        raise ConnectorError(f"vSphere login at {where} failed: {exc.msg}") from None


def disconnect(si: Any) -> None:
    """Log out; a dead session has nothing to log out of."""
    from pyVim.connect import Disconnect

    try:
        Disconnect(si)
    except Exception as exc:  # closing a dead connection: nothing left to do
        log.debug("vSphere logout: %s", exc)

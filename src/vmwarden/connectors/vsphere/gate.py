"""The power-on gate on vSphere: what the platform offers, and why vmwarden isolates ahead.

vSphere asks nobody before a VM powers on (libvirt has its qemu hook). There are two ways
to keep a VM the gate would hold or deny from being exposed:

1. **Isolate ahead** (what ``watch`` does, for every platform without a start hook): a
   powered-off VM the gate would hold or deny gets its NICs moved to the quarantine
   portgroup, disconnected and not connected at power-on (``startConnected=False``,
   ``connectors/vsphere/isolation.py``). If someone powers it on, it comes up with no
   network; the ``VmPoweredOnEvent`` (``events.py``) makes the gate judge it and, after a
   full reconcile, release it if it passes (``engine/watch/gate.py``). Zero exposure as long
   as the VM was seen powered off once (a reconcile runs at every connection).
2. **Refuse the power-on**: vCenter's ``AuthorizationManager.DisableMethods`` on
   ``PowerOnVM_Task`` makes vCenter refuse the method for that VM until
   ``EnableMethods``. It is a method for vCenter solution extensions: pyvmomi's bindings
   leave it out, and govmomi's vcsim 0.24 does not implement it
   (``simulator/authorization_manager.go`` has no ``DisableMethods``; an unknown method is a
   ``MethodNotFound`` fault). Since no backend here can show it working, vmwarden does not
   use it: a denied VM is isolated ahead like a held one. ``power_on_lock(conn)`` asks the
   vCenter whether it serves the method (one SOAP call that disables nothing), so the day a
   backend does, a test says so (``tests/connectors/vsphere/test_vsphere_gate.py``).
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

from vmwarden.connectors.vsphere.connection import VsphereConnector

_SOAP = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
    '<soapenv:Body><DisableMethods xmlns="urn:vim25">'
    '<_this type="AuthorizationManager">{this}</_this>'
    "<method><method>PowerOnVM_Task</method></method>"
    "<sourceId>vmwarden-probe</sourceId>"
    "</DisableMethods></soapenv:Body></soapenv:Envelope>"
)
# Faults that mean "this vCenter does not serve the method" (anything else: it does); vcsim
# 0.24 answers InvalidRequest "no vmomi type defined for 'DisableMethods'" (govmomi's types,
# generated from the public WSDL, have none).
_ABSENT = ("MethodNotFound", "NotImplemented", "NotSupported", "no vmomi type defined")


@dataclass
class PowerOnLock:
    """Whether this vCenter can refuse a VM's power-on (``DisableMethods``), and why not."""

    conn: VsphereConnector
    why: str = ""
    _known: bool | None = field(default=None, repr=False)

    def supported(self) -> bool:
        """Asks once per connection: a ``DisableMethods`` naming no VM (disables nothing)."""
        if self._known is None:
            self._known, self.why = _probe(self.conn._si)
        return self._known


def power_on_lock(conn: VsphereConnector) -> PowerOnLock:
    return PowerOnLock(conn)


def _probe(si: Any) -> tuple[bool, str]:
    """(served, why) for ``DisableMethods``: pyvmomi has no binding, so the request is sent
    as the SOAP body vCenter documents, over the session's own connection and cookie."""
    stub = si._stub
    this = html.escape(si.content.authorizationManager._moId)
    headers = {
        "Cookie": stub.cookie,
        "SOAPAction": "urn:vim25/6.5",
        "Content-Type": "text/xml; charset=UTF-8",
    }
    conn = stub.GetConnection()
    try:
        conn.request("POST", stub.path, _SOAP.format(this=this).encode(), headers)
        resp = conn.getresponse()
        body = resp.read().decode("utf-8", "replace")
    except Exception:
        conn.close()
        raise
    stub.ReturnConnection(conn)
    if resp.status == 200:
        return True, "vCenter serves AuthorizationManager.DisableMethods"
    absent = next((f for f in _ABSENT if f in body), None)
    if absent is not None:
        return False, (
            f"this vCenter does not serve AuthorizationManager.DisableMethods ({absent!r}): "
            "VMs the gate denies are isolated ahead of power-on instead"
        )
    return True, f"vCenter knows AuthorizationManager.DisableMethods (HTTP {resp.status})"

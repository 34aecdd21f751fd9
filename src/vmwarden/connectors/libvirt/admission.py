"""libvirt's admission capability: the qemu hook's request (the domain XML on its stdin,
forwarded to ``watch``'s admission socket) read into the VM that is about to start.

The engine's decider (``engine.admission_decider``) judges the VM; only this module knows
the request is domain XML. It must not import libvirt-python (see ``schemes``).
"""

from __future__ import annotations

from vmwarden.connectors.capabilities import register_admission
from vmwarden.connectors.libvirt.domxml import parse_domain
from vmwarden.connectors.libvirt.schemes import SCHEMES
from vmwarden.model.vm import VM, State


@register_admission(*SCHEMES)
def vm_from_hook(request: str, *, host: str, uri: str) -> VM:
    """The domain the hook is asked about, as defined (shut off, persistent: it is not
    running yet). Unreadable XML raises ``VmwardenError`` from ``parse_domain``."""
    return parse_domain(request, host=host, uri=uri, state=State.SHUTOFF, persistent=True)

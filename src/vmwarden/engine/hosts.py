"""One hypervisor, one inventory: URIs that reach the same daemon are counted once.

``qemu:///system``, ``qemu+unix:///system`` and ``qemu+tcp://localhost/system`` can all reach
one libvirtd. Sweeping each as a host of its own would list every VM two or three times —
duplicate MACs and machine-ids with themselves, co-location with themselves, twice the
actions. The connection says which daemon it reached (``HostInventory.daemon``); the first
URI given for a daemon keeps its VMs, and each further one is a warning naming both.
"""

from __future__ import annotations

from vmwarden.model import HostInventory


def dedupe_hosts(inventories: list[HostInventory]) -> tuple[list[HostInventory], list[str]]:
    """The inventories with each daemon once (first URI wins), and a warning per extra URI."""
    first: dict[str, HostInventory] = {}
    kept: list[HostInventory] = []
    warnings: list[str] = []
    for inv in inventories:
        key = inv.daemon or inv.uri
        seen = first.get(key)
        if seen is None:
            first[key] = inv
            kept.append(inv)
            continue
        warnings.append(
            f"{inv.uri} reaches the same hypervisor as {seen.uri} (host {seen.host}): "
            f"its {len(inv.vms)} VM(s) are counted once, under {seen.uri}; "
            f"give one URI per host"
        )
    return kept, warnings

"""Plain records shared by every layer: what vmwarden knows about VMs, images and findings."""

from vmwarden.model.estate import Estate, HostInventory, Network, Pool, Volume
from vmwarden.model.finding import ActionRecord, Finding, Severity
from vmwarden.model.image import Image
from vmwarden.model.vm import VM, Disk, Layer, Nic, State, VmMeta

__all__ = [
    "VM",
    "ActionRecord",
    "Disk",
    "Estate",
    "Finding",
    "HostInventory",
    "Image",
    "Layer",
    "Network",
    "Nic",
    "Pool",
    "Severity",
    "State",
    "VmMeta",
    "Volume",
]

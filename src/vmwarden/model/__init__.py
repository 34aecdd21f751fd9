"""Plain records shared by every layer: what vmwarden knows about VMs, images and findings."""

from vmwarden.model.estate import Estate, HostInventory, Network, Pool, Volume
from vmwarden.model.finding import ActionRecord, Finding, Severity
from vmwarden.model.guest import GuestFacts, HostKey, Package, User
from vmwarden.model.image import Image
from vmwarden.model.vm import VM, Disk, Layer, Nic, NicOrigin, State, VmMeta

__all__ = [
    "VM",
    "ActionRecord",
    "Disk",
    "Estate",
    "Finding",
    "GuestFacts",
    "HostInventory",
    "HostKey",
    "Image",
    "Layer",
    "Network",
    "Nic",
    "NicOrigin",
    "Package",
    "Pool",
    "Severity",
    "State",
    "User",
    "VmMeta",
    "Volume",
]

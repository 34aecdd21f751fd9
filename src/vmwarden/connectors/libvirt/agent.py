"""Live facts from a running VM's QEMU guest agent (``virDomainGetGuestInfo``).

A running guest's disk is read crash-consistent and may lag what runs (a hostname set at
boot, a kernel booted since the last package upgrade); where the guest runs ``qemu-ga``,
the agent says what is live. Only a domain whose live XML shows the agent channel
``org.qemu.guest_agent.0`` with ``state='connected'`` is asked, so a sweep of VMs without
an agent makes no agent call at all.

The agent is untrusted and may hang (a frozen guest, a stopped ``qemu-ga``): every answer
is bounded by ``virDomainAgentSetResponseTimeout`` (``AGENT_TIMEOUT`` seconds, which also
bounds libvirt's ``guest-sync`` handshake). That setting is the domain's own in libvirtd, so
a read-only scan must not leave it behind (a backup tool's ``fsfreeze`` may rightly take
longer): it is put back to libvirt's default, block, as soon as the answer is in. A custom
timeout someone set through the API cannot be read back and is reset to that default too.
A failure never raises: it becomes a note in ``GuestFacts.errors``, the facts stay unknown.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import libvirt

from vmwarden.model.guest import GuestFacts
from vmwarden.model.vm import VM, State

log = logging.getLogger(__name__)
AGENT_TIMEOUT = 2  # seconds per agent command; a healthy agent answers in milliseconds
_TYPES = (
    libvirt.VIR_DOMAIN_GUEST_INFO_USERS
    | libvirt.VIR_DOMAIN_GUEST_INFO_OS
    | libvirt.VIR_DOMAIN_GUEST_INFO_TIMEZONE
    | libvirt.VIR_DOMAIN_GUEST_INFO_HOSTNAME
    | libvirt.VIR_DOMAIN_GUEST_INFO_FILESYSTEM
    | getattr(libvirt, "VIR_DOMAIN_GUEST_INFO_INTERFACES", 0)  # libvirt >= 7.10
)
_FAMILIES = {"mswindows": "windows", "freebsd": "bsd", "openbsd": "bsd", "netbsd": "bsd"}


def read_agent(dom: libvirt.virDomain, vm: VM) -> GuestFacts | None:
    """The agent's live facts for ``vm`` (None: not running or no agent channel).

    Also lays the agent's addresses over ``vm.nics`` (by MAC): the guest's own view beats
    DHCP leases and ARP, which only know addresses the host saw.
    """
    if vm.state is not State.RUNNING or vm.agent_channel is None:
        return None
    image = f"agent:{vm.name}"
    if vm.agent_channel == "disconnected":
        return _absent(image, "channel disconnected (qemu-ga is not running in the guest)")
    if vm.agent_channel != "connected":
        return _absent(image, f"channel state {vm.agent_channel}, not asked")
    try:
        dom.agentSetResponseTimeout(AGENT_TIMEOUT, 0)
    except libvirt.libvirtError as exc:
        return _absent(image, f"cannot bound its response time, not asked: {_message(exc)}")
    try:
        info = dom.guestInfo(_TYPES, 0) or {}
    except libvirt.libvirtError as exc:
        return _absent(image, f"no answer: {_message(exc)}")
    finally:
        _restore_timeout(dom)
    if not info:
        return _absent(image, f"no answer within {AGENT_TIMEOUT}s")
    facts = facts_from_info(info, image)
    _nic_addresses(vm, facts)
    return facts


def facts_from_info(info: dict[str, Any], image: str) -> GuestFacts:
    """``virDomainGetGuestInfo``'s flat typed parameters (``os.id``, ``fs.0.mountpoint``,
    ``if.1.addr.0.addr``, ...) as ``GuestFacts``; a type the agent did not answer stays
    None. ``inspected_at`` is when the agent answered."""
    facts = GuestFacts(image=image, inspected_at=datetime.now(UTC).isoformat())
    _os(info, facts)
    facts.hostname = info.get("hostname")
    if "user.count" in info:
        facts.logged_in = [_user(info, f"user.{i}.") for i in range(int(info["user.count"]))]
    if "fs.count" in info:
        facts.mounts = [_mount(info, f"fs.{i}.") for i in range(int(info["fs.count"]))]
        facts.filesystems = sorted({m["fstype"] for m in facts.mounts if m["fstype"]})
    if "if.count" in info:
        found = [_interface(info, f"if.{i}.") for i in range(int(info["if.count"]))]
        facts.network = [iface for iface in found if iface["name"] != "lo"]
    if "timezone.name" in info or "timezone.offset" in info:
        facts.timezone = {"name": info.get("timezone.name"), "offset": info.get("timezone.offset")}
    return facts


def _os(info: dict[str, Any], facts: GuestFacts) -> None:
    os_id = info.get("os.id")
    if os_id is None and "os.kernel-release" not in info:
        return
    facts.os_family = _FAMILIES.get(str(os_id), "linux")
    facts.os_name = os_id
    facts.os_version = info.get("os.version-id") or info.get("os.version")
    facts.os_pretty = info.get("os.pretty-name") or info.get("os.name")
    facts.kernel_release = info.get("os.kernel-release")


def _user(info: dict[str, Any], key: str) -> dict[str, Any]:
    millis = info.get(key + "login-time")
    login = datetime.fromtimestamp(millis / 1000, UTC).isoformat() if millis else None
    return {"name": info.get(key + "name"), "domain": info.get(key + "domain"), "login_time": login}


def _mount(info: dict[str, Any], key: str) -> dict[str, Any]:
    disks = range(int(info.get(key + "disk.count", 0)))
    return {
        "mountpoint": info.get(key + "mountpoint"),
        "device": info.get(key + "name"),
        "fstype": info.get(key + "fstype"),
        "total_bytes": info.get(key + "total-bytes"),
        "used_bytes": info.get(key + "used-bytes"),
        "disks": [info.get(f"{key}disk.{d}.alias") for d in disks],
    }


def _interface(info: dict[str, Any], key: str) -> dict[str, Any]:
    addrs = range(int(info.get(key + "addr.count", 0)))
    return {
        "source": "agent",
        "name": info.get(key + "name"),
        "mac": (info.get(key + "hwaddr") or "").lower() or None,
        "method": "live",
        "addresses": [
            f"{info[f'{key}addr.{a}.addr']}/{info.get(f'{key}addr.{a}.prefix', '')}".rstrip("/")
            for a in addrs
            if info.get(f"{key}addr.{a}.addr")
        ],
        "gateway": None,
    }


def _nic_addresses(vm: VM, facts: GuestFacts) -> None:
    live = {i["mac"]: i["addresses"] for i in facts.network or [] if i["mac"] and i["addresses"]}
    for nic in vm.nics:
        found = live.get((nic.mac or "").lower())
        if found:
            nic.addresses = [a.split("/", 1)[0] for a in found]


def _restore_timeout(dom: libvirt.virDomain) -> None:
    """libvirt's default for a domain (block): what it was before this sweep asked."""
    try:
        dom.agentSetResponseTimeout(libvirt.VIR_DOMAIN_AGENT_RESPONSE_TIMEOUT_BLOCK, 0)
    except libvirt.libvirtError as exc:  # the VM went away meanwhile: nothing to restore
        log.debug("could not restore the agent timeout of %s: %s", dom.name(), _message(exc))


def _absent(image: str, why: str) -> GuestFacts:
    return GuestFacts(image=image, errors=[f"guest agent: {why}; live facts not read"])


def _message(exc: libvirt.libvirtError) -> str:
    return (exc.get_error_message() or str(exc)).strip()

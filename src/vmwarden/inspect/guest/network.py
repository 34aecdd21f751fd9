"""Network configuration, best effort: ifupdown, netplan, NetworkManager, networkd, ifcfg.

Each interface found becomes ``{"source", "name", "method", "addresses", "gateway"}``
(``method`` is ``dhcp``, ``static``, ``manual``, ``loopback`` or what the file says).
"""

from __future__ import annotations

import configparser
import posixpath
from typing import Any

import yaml

from vmwarden.inspect.guest.files import GuestFiles

MAX_INTERFACES = 256
_LIMIT = 1024 * 1024


def read_network(files: GuestFiles) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    found += _ifupdown(files)
    found += _netplan(files)
    found += _networkmanager(files)
    found += _networkd(files)
    found += _ifcfg(files)
    return found[:MAX_INTERFACES]


def _iface(source: str, name: str | None, method: str | None) -> dict[str, Any]:
    return {"source": source, "name": name, "method": method, "addresses": [], "gateway": None}


def _ifupdown(files: GuestFiles) -> list[dict[str, Any]]:
    paths = ["/etc/network/interfaces"]
    result: list[dict[str, Any]] = []
    seen: set[str] = set()
    while paths and len(seen) < 64:
        path = paths.pop(0)
        if path in seen:
            continue
        seen.add(path)
        text = files.read_text(path, limit=_LIMIT)
        current: dict[str, Any] | None = None
        for line in (text or "").splitlines():
            parts = line.split("#", 1)[0].split()
            if not parts:
                continue
            word = parts[0]
            if word in ("source", "source-directory") and len(parts) > 1:
                target = parts[1]
                if not target.startswith("/"):
                    target = posixpath.join("/etc/network", target)
                directory, pattern = (
                    (target, "*") if word == "source-directory" else (posixpath.split(target))
                )
                paths += files.glob(directory, pattern)
            elif word == "iface" and len(parts) >= 4:
                current = _iface("ifupdown", parts[1], parts[3])
                result.append(current)
            elif current is not None and word == "address" and len(parts) > 1:
                current["addresses"].append(parts[1])
            elif current is not None and word == "gateway" and len(parts) > 1:
                current["gateway"] = parts[1]
    return result


def _netplan(files: GuestFiles) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = []
    for path in files.glob("/etc/netplan", "*.yaml"):
        text = files.read_text(path, limit=_LIMIT)
        try:
            doc = yaml.safe_load(text or "")
        except yaml.YAMLError:
            continue
        network = doc.get("network") if isinstance(doc, dict) else None
        if not isinstance(network, dict):
            continue
        for kind in ("ethernets", "bonds", "bridges", "vlans", "wifis"):
            section = network.get(kind)
            if not isinstance(section, dict):
                continue
            for name, raw in section.items():
                conf = raw if isinstance(raw, dict) else {}
                dhcp = conf.get("dhcp4") is True or conf.get("dhcp6") is True
                entry = _iface("netplan", str(name), "dhcp" if dhcp else "static")
                addresses = conf.get("addresses")
                if isinstance(addresses, list):
                    entry["addresses"] = [str(a) for a in addresses if isinstance(a, str)][:64]
                gateway = conf.get("gateway4") or conf.get("gateway6")
                entry["gateway"] = gateway if isinstance(gateway, str) else None
                result.append(entry)
    return result


def _ini(text: str) -> configparser.ConfigParser | None:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read_string(text)
    except configparser.Error:
        return None
    return parser


def _networkmanager(files: GuestFiles) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = []
    for path in files.glob("/etc/NetworkManager/system-connections", "*"):
        parser = _ini(files.read_text(path, limit=_LIMIT) or "")
        if parser is None or not parser.has_section("connection"):
            continue
        name = parser.get("connection", "interface-name", fallback=None) or parser.get(
            "connection", "id", fallback=None
        )
        method = parser.get("ipv4", "method", fallback=None)
        entry = _iface("networkmanager", name, "dhcp" if method == "auto" else method)
        if parser.has_section("ipv4"):
            for key, value in parser.items("ipv4"):
                if key.startswith("address"):
                    address, _, gateway = value.partition(",")
                    entry["addresses"].append(address.strip())
                    entry["gateway"] = gateway.strip() or entry["gateway"]
            entry["gateway"] = parser.get("ipv4", "gateway", fallback=entry["gateway"])
        result.append(entry)
    return result


def _networkd(files: GuestFiles) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = []
    for path in files.glob("/etc/systemd/network", "*.network"):
        parser = _ini(files.read_text(path, limit=_LIMIT) or "")
        if parser is None:
            continue
        name = parser.get("Match", "Name", fallback=None)
        dhcp = parser.get("Network", "DHCP", fallback="no").lower() in ("yes", "true", "ipv4")
        entry = _iface("networkd", name, "dhcp" if dhcp else "static")
        address = parser.get("Network", "Address", fallback=None)
        entry["addresses"] = [address] if address else []
        entry["gateway"] = parser.get("Network", "Gateway", fallback=None)
        result.append(entry)
    return result


def _ifcfg(files: GuestFiles) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = []
    for path in files.glob("/etc/sysconfig/network-scripts", "ifcfg-*"):
        values: dict[str, str] = {}
        for line in (files.read_text(path, limit=_LIMIT) or "").splitlines():
            key, sep, value = line.partition("=")
            if sep:
                values[key.strip()] = value.strip().strip("\"'")
        proto = values.get("BOOTPROTO", "none").lower()
        entry = _iface("ifcfg", values.get("DEVICE"), "dhcp" if proto == "dhcp" else "static")
        if values.get("IPADDR"):
            prefix = values.get("PREFIX")
            entry["addresses"] = [f"{values['IPADDR']}/{prefix}" if prefix else values["IPADDR"]]
        entry["gateway"] = values.get("GATEWAY")
        result.append(entry)
    return result

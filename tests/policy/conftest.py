"""Policy-layer fixtures: real model records built small, and policy files on disk."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from vmwarden.model import (
    VM,
    Disk,
    Estate,
    GuestFacts,
    Image,
    Layer,
    Nic,
    Package,
    State,
    VmMeta,
)
from vmwarden.policy import Policy, Verdict, load_policy
from vmwarden.policy.context import Context

APPROVED = "sha256:" + "a" * 64
ROGUE = "sha256:" + "b" * 64
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)

BASE_POLICY = f"""\
version: 1
templates:
  - name: debian12-base
    digest: {APPROVED}
zones:
  internal: {{networks: [prod], classifications: [internal]}}
  pci: {{networks: [pci], classifications: [pci]}}
quarantine: {{network: quarantine}}
notify:
  - {{type: webhook, url: "http://127.0.0.1:9000/hook"}}
"""


def disk(target: str = "vda", *digests: str | None, device: str = "disk", **layer: Any) -> Disk:
    """A disk whose chain has one layer per digest (the last is the root)."""
    chain = [
        Layer(path=f"/var/lib/libvirt/images/{target}-{i}.qcow2", format="qcow2", digest=d)
        for i, d in enumerate(digests or (APPROVED,))
    ]
    for key, value in layer.items():
        setattr(chain[0], key, value)
    return Disk(target=target, device=device, chain=chain)


def nic(mac: str | None = "52:54:00:00:00:01", network: str | None = "prod", **kw: Any) -> Nic:
    return Nic(
        mac=mac, type="network" if network else kw.pop("type", "bridge"), network=network, **kw
    )


_counter = iter(range(1, 10_000_000))


def make_vm(
    name: str = "web01",
    *,
    host: str = "host1",
    state: State = State.RUNNING,
    disks: list[Disk] | None = None,
    nics: list[Nic] | None = None,
    classification: str | None = None,
    registered: bool | None = True,
    owner: str | None = "alice",
    **kw: Any,
) -> VM:
    n = next(_counter)
    return VM(
        id=f"00000000-0000-0000-0000-{n:012d}",
        name=name,
        host=host,
        uri=f"test:///{host}.xml",
        state=state,
        vcpus=2,
        memory_kib=2 * 1024 * 1024,
        disks=[disk()] if disks is None else disks,
        nics=[nic(mac=f"52:54:00:00:{n // 256 % 256:02x}:{n % 256:02x}")] if nics is None else nics,
        meta=VmMeta(owner=owner, classification=classification, registered=registered),
        **kw,
    )


def facts(*packages: str | Package, **kw: Any) -> GuestFacts:
    """Debian 12 guest facts; packages as ``"name=version"`` strings or ``Package`` records.
    Fields not given stay None (unknown), as the inspector leaves what it could not read."""
    pkgs = [p if isinstance(p, Package) else Package(*p.split("=", 1)) for p in packages]
    kw.setdefault("packages", pkgs)
    return GuestFacts(
        image=kw.pop("image", "/var/lib/libvirt/images/guest.qcow2"),
        os_family="linux",
        os_name=kw.pop("os_name", "debian"),
        os_version=kw.pop("os_version", "12"),
        **kw,
    )


def make_estate(vms: list[VM], images: list[Image] | None = None, **kw: Any) -> Estate:
    hosts = sorted({vm.host for vm in vms})
    return Estate(vms=vms, images=images or [], catalog={}, now=NOW, hosts=hosts, **kw)


def judge(
    policy: Policy, vms: list[VM], images: list[Image] | None = None, **estate: Any
) -> dict[str, Verdict]:
    """Each resource's verdict under the policy's only rule, by name (or image path).
    ``estate`` sets Estate fields (``vulns``, ``catalog_paths``)."""
    ctx = Context(make_estate(vms, images, **estate), policy)
    rule = policy.rules[0]
    rule.filter.prepare(ctx)
    resources = vms if rule.resource == "vm" else images or []
    return {getattr(r, "name", None) or r.path: rule.filter.match(r, ctx) for r in resources}


@pytest.fixture
def write_policy(tmp_path: Path) -> Callable[[str], Path]:
    """Writes YAML text to ``policy.yaml`` under tmp_path and returns its path."""

    def write(text: str, name: str = "policy.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture
def policy_with(write_policy: Callable[[str], Path]) -> Callable[..., Policy]:
    """A loaded policy: BASE_POLICY plus one rule with the given filters (YAML flow text)."""

    def build(filters: str, resource: str = "vm", actions: str = "[]") -> Policy:
        text = BASE_POLICY + (
            "rules:\n"
            f"  - name: r\n    resource: {resource}\n    severity: high\n"
            f"    filters: {filters}\n    actions: {actions}\n"
        )
        return load_policy(write_policy(text))

    return build

"""Generated estates of many test-driver hosts (``test:///…/hv-NNNNN.xml``), one file each.

For the streaming sweep's tests and ``bench/estate_scale.py``: 10,000 hosts of 100 VMs is a
million VMs. Each host is :func:`fleetgen.generate_fleet` with its own seed (so hosts
differ), then given estate-unique MAC addresses; every ``dup_every``-th VM also takes the
first MAC of a VM on the previous host, so ``duplicate-mac`` has cross-host work to do.
Files are written once into ``directory`` (a ``.complete`` marker names the shape) and
reused; writing is plain string formatting (fleetgen), about 10 ms per 100-VM host.
"""

from __future__ import annotations

from pathlib import Path

from vmwarden.engine.fleetgen import FLEET_NETWORKS, FleetNic, _mac, generate_fleet, write_fleet


def host_name(h: int) -> str:
    return f"hv-{h:05d}"


def write_estate(directory: Path, hosts: int, per_host: int, *, dup_every: int = 500) -> list[str]:
    """The ``test://`` URIs of an estate of ``hosts`` x ``per_host`` VMs under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    marker = directory / ".complete"
    shape = f"{hosts} {per_host} {dup_every}\n"
    uris = [f"test://{directory / (host_name(h) + '.xml')}" for h in range(hosts)]
    if marker.exists() and marker.read_text() == shape:
        return uris
    for h in range(hosts):
        name = host_name(h)
        vms = generate_fleet(per_host, seed=h, hosts=[name])[name]
        for i, vm in enumerate(vms):
            n = h * per_host + i
            for k, nic in enumerate(vm.nics):
                nic.mac = _mac(2 * n + k)
            if h > 0 and dup_every and n % dup_every == 0:
                vm.nics.append(FleetNic(_mac(2 * (n - per_host)), "prod"))
        write_fleet(directory / f"{name}.xml", vms, FLEET_NETWORKS)
    marker.write_text(shape)
    return uris

"""The connector conformance suite (#12.5): one set of tests, written only against the
connector contract (``vmwarden.connectors.base.Connector``), that every platform passes
against its *real* backend.

How a platform plugs in
-----------------------
Write a backend class (see ``libvirt_backend.py``) that satisfies :class:`Backend`:

- ``build(work)`` makes a small estate on the platform with the platform's own tools (not
  through vmwarden: the suite checks what the connector reports against what was made) and
  returns an :class:`Estate`: the connection URI, the host name the connector must report,
  the VMs made (:class:`VmSpec`, by role), the quarantine spec isolation uses there, and
  the images ``open_disk`` must read (a known image and this machine's copy of its bytes; an
  approved template, a full clone of it, an unrelated image);
- ``start(vm_id)`` / ``stop(vm_id)`` power a VM on and off by the platform's own API (what
  the events test observes);
- ``teardown()`` removes what ``build`` made (only that: shared hosts hold others' VMs).

Then add one line to :data:`BACKENDS` (``"name": factory``). The factory gets pytest's
``tmp_path_factory`` and may yield (a generator) to clean up a simulator it started.
Roles the suite uses: ``plain`` (shut off, two NICs, one disk, metadata), ``isolate`` and
``crash`` (shut off, two NICs each: isolation and crash repair), ``events`` (shut off, one
NIC; the test starts it). A platform without push events is polled (``engine.watch.poll``):
``Estate.start_bound`` is the bound the platform states for seeing a start.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pytest

from vmwarden.model.isolation import QuarantineSpec
from vmwarden.model.vm import State


@dataclass(frozen=True)
class VmSpec:
    """One VM as the backend made it: what the connector's inventory must report."""

    id: str
    name: str
    state: State
    nics: frozenset[tuple[str, str]]  # (MAC, network as the platform names it)
    disks: tuple[str, ...]  # each disk's path (top layer) as the platform names it
    host: str = ""  # the VM's host when not the connection's (vSphere: its ESXi host)


@dataclass
class Estate:
    """What one backend built (see the module docstring)."""

    uri: str
    host: str
    vms: dict[str, VmSpec]
    spec: QuarantineSpec
    image: str  # a known image, as open_disk names it on the VM's host
    image_local: Path  # the same bytes on this machine
    template: str  # an approved template's image (open_disk name) ...
    full_clone: str  # ... a full clone of it, converted and used ...
    unrelated: str  # ... and an unrelated image of the same OS family
    missing: str  # a path open_disk cannot serve (no such disk / outside every pool)
    start_bound: float = 5.0  # seconds within which a start is seen (events or poll)
    extra: dict[str, Any] = field(default_factory=dict)


class Backend(Protocol):
    name: str

    def build(self, work: Path) -> Estate: ...

    def start(self, vm_id: str) -> None: ...

    def stop(self, vm_id: str) -> None: ...

    def teardown(self) -> None: ...


def _libvirt_local(tmp: pytest.TempPathFactory) -> Backend:
    from tests.connectors.conformance.libvirt_backend import LocalLibvirt

    return LocalLibvirt()


def _libvirt_remote(tmp: pytest.TempPathFactory) -> Iterator[Backend]:
    from tests.connectors.conformance.libvirt_backend import RemoteLibvirt
    from tests.hypervisors import second_host

    for host in second_host(tmp, "vmw-r-hostb"):
        yield RemoteLibvirt(host)


def _vsphere(tmp: pytest.TempPathFactory) -> Iterator[Backend]:
    from tests.connectors.conformance.vsphere_backend import vcsim_backend

    yield from vcsim_backend()


def _aws(tmp: pytest.TempPathFactory) -> Iterator[Backend]:
    from tests.connectors.conformance.aws_backend import moto_backend

    yield from moto_backend()


#: name -> factory(tmp_path_factory) returning (or yielding) a Backend.
BACKENDS: dict[str, Callable[[pytest.TempPathFactory], Any]] = {
    "aws": _aws,
    "libvirt": _libvirt_local,
    "libvirt-remote": _libvirt_remote,
    "vsphere": _vsphere,
}


@pytest.fixture(scope="module", params=sorted(BACKENDS))
def platform(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Backend, Estate]]:
    """One backend and the estate it built (torn down after the module's tests)."""
    made = BACKENDS[request.param](tmp_path_factory)
    gen = made if inspect.isgenerator(made) else None
    backend: Backend = next(gen) if gen is not None else made
    try:
        try:
            estate = backend.build(tmp_path_factory.mktemp(f"conf-{request.param}"))
            yield backend, estate
        finally:  # also after a failed build: what it made so far goes
            backend.teardown()
    finally:
        if gen is not None:
            for _ in gen:
                pass

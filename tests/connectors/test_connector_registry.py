"""The connector registry, ``open_connector`` and concurrent ``inventory_all``."""

from __future__ import annotations

import importlib
import threading
import time
from pathlib import Path

import pytest

from tests.connectors.connectors_fleet import COUNTS, fleet_vms, write_fleet
from vmwarden.connectors import (
    Connector,
    inventory_all,
    open_connector,
    register_connector,
    registered_schemes,
)
from vmwarden.connectors.base import uri_scheme
from vmwarden.connectors.libvirt.connection import LibvirtConnector
from vmwarden.errors import ConnectorError, UnreachableError, VmwardenError
from vmwarden.model import HostInventory


def test_libvirt_schemes_are_registered() -> None:
    schemes = registered_schemes()
    for scheme in ("test", "qemu", "qemu+ssh", "qemu+tcp", "qemu+tls", "lxc"):
        assert scheme in schemes


def test_duplicate_registration_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"'qemu' by vmwarden\.connectors\.libvirt"):

        @register_connector("qemu")
        class Again(LibvirtConnector):
            pass

    with pytest.raises(ValueError, match="at least one"):
        register_connector()


def test_open_connector_picks_by_scheme(fleet_uri: str) -> None:
    with open_connector(fleet_uri) as conn:
        assert isinstance(conn, LibvirtConnector)
        assert isinstance(conn, Connector)
        assert conn.host == "dc1-fleet"


def test_unknown_scheme_lists_valid_ones() -> None:
    with pytest.raises(ConnectorError, match="no connector for URI scheme 'nosuch'") as info:
        open_connector("nosuch://eu-west-1")
    assert info.value.hint and "qemu+ssh" in info.value.hint
    with pytest.raises(ConnectorError, match="not a connection URI"):
        uri_scheme("fleet.xml")
    assert uri_scheme("QEMU+SSH://h/system") == "qemu+ssh"


def test_inventory_all_runs_hosts_concurrently(tmp_path: Path, fleet_uri: str) -> None:
    racks = [
        write_fleet(tmp_path / f"rack-{i}.xml", fleet_vms()[i * 10 : i * 10 + 10], bare=False)
        for i in range(4)
    ]
    uris = [f"test://{p}" for p in racks] + [fleet_uri, f"test://{tmp_path}/missing.xml"]
    seen: list[tuple[str, str]] = []
    threads: set[str] = set()
    lock = threading.Lock()

    def on_done(uri: str, result: HostInventory | VmwardenError) -> None:
        with lock:
            seen.append((uri, type(result).__name__))
            threads.add(threading.current_thread().name)

    results = inventory_all(uris, on_done=on_done)
    assert [r.host for r in results[:5]] == ["rack-0", "rack-1", "rack-2", "rack-3", "dc1-fleet"]
    assert [len(r.vms) for r in results[:4]] == [10, 10, 10, 10]
    assert len(results[4].vms) == sum(COUNTS.values()) + 1
    assert isinstance(results[5], UnreachableError)
    assert sorted(seen) == sorted(
        zip(uris, ["HostInventory"] * 5 + ["UnreachableError"], strict=True)
    )
    assert len(threads) > 1 and all(t.startswith("inventory") for t in threads)


def test_inventory_all_backs_off_in_parallel(tmp_path: Path) -> None:
    """Unreachable hosts back off in parallel, not one after another: their retries overlap."""
    uris = [f"test://{tmp_path}/missing-{i}.xml" for i in range(4)]
    spans: dict[str, tuple[float, float]] = {}
    lock = threading.Lock()

    def on_done(uri: str, result: object) -> None:
        with lock:
            spans[uri] = (0.0, time.monotonic())

    started = time.monotonic()
    results = inventory_all(uris, on_done=on_done)
    assert all(isinstance(r, UnreachableError) for r in results)
    # Each host needs its full backoff (>= 1.5 s); serially the last would end >= 4.5 s after
    # the first. In parallel they all end within one backoff of each other.
    ends = sorted(end for _, end in spans.values())
    assert ends[0] - started >= 1.0
    assert ends[-1] - ends[0] < ends[0] - started


def test_inventory_all_empty() -> None:
    assert inventory_all([]) == []


@pytest.mark.slow
def test_ten_thousand_domains_inventory_in_seconds(tmp_path: Path) -> None:
    from tests.connectors.connectors_fleet import FleetVm

    vms = [
        FleetVm(
            name=f"vm{i:05d}",
            uuid=f"00000000-0000-4000-9000-{i:012d}",
            kind=("run", "paused", "off")[i % 3],
            mac=f"52:54:01:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}",
            network="prod",
            vlan=None,
            owner=None,
        )
        for i in range(10_000)
    ]
    path = write_fleet(tmp_path / "big.xml", vms, bare=False)
    with LibvirtConnector(f"test://{path}") as conn:
        inv = conn.inventory()
    assert len(inv.vms) == 10_000 and inv.warnings == []
    states = {vm.state.value for vm in inv.vms}
    assert states == {"running", "paused", "shutoff"}


def test_a_daemon_served_test_driver_opens_through_the_registry(fleet_file: Path) -> None:
    """``test+unix:///fleet.xml`` (the test driver served by the real libvirtd, as the watch
    footprint bench and locality tests use it) is libvirt's: the registry, the event feed and
    admission must know the daemon spellings too, not only ``test://``."""
    import subprocess

    from vmwarden.connectors.capabilities import admission_parser

    subprocess.run(["bash", "scripts/start-libvirtd.sh"], check=True)
    for scheme in ("test+unix", "test+tcp", "test+tls", "test+ssh"):
        assert scheme in registered_schemes()
    uri = f"test+unix://{fleet_file}"
    with open_connector(uri) as conn:
        assert isinstance(conn, LibvirtConnector)
        names = {vm.name for vm in conn.inventory().vms}
        assert {"run-001", "off-001"} <= names and len(names) >= sum(COUNTS.values())
    assert admission_parser(uri) is not None


def test_per_scheme_capabilities_refuse_a_second_registration() -> None:
    """Event feeds, admission parsers and isolation record readers share one all-or-none
    claim: a taken scheme is an error and nothing of the new entry is registered."""
    from vmwarden.connectors.base import claim_schemes, register_event_feed
    from vmwarden.connectors.capabilities import (
        admission_parser,
        records_of,
        register_admission,
        register_records,
    )

    importlib.import_module("vmwarden.connectors.libvirt.events")  # registers libvirt's feed
    uri = "qemu:///system"
    before = (admission_parser(uri), records_of(uri))
    with pytest.raises(ValueError, match=r"event feed already registered for \['qemu'\]"):
        register_event_feed("nosuch-feed", "qemu")(object)
    with pytest.raises(ValueError, match=r"admission parser already registered for \['qemu'\]"):
        register_admission("nosuch-adm", "qemu")(lambda request, *, host, uri: None)
    with pytest.raises(ValueError, match=r"isolation records already registered"):
        register_records("nosuch-rec", "qemu")(object())
    assert (admission_parser(uri), records_of(uri)) == before
    table: dict[str, int] = {"a": 1}
    with pytest.raises(ValueError, match=r"thing already registered for \['a'\]"):
        claim_schemes(table, ("b", "a"), 2, "thing", threading.Lock())
    assert table == {"a": 1}  # all or none: 'b' was not claimed either

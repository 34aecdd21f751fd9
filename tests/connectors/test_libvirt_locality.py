"""#10.2: whether a libvirt connection reaches this machine is asked of the daemon (its host
UUID and hostname), never read off the URI. Real daemons: the machine's libvirtd, a second
libvirtd that is another host (own namespaces, host UUID and hostname), TCP tunnels to each.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.hypervisors import LOCAL_SOCKET, SecondHost, Tunnel, second_host, tunnel
from vmwarden.connectors.libvirt.connection import LibvirtConnector
from vmwarden.connectors.locality import known_local


@pytest.fixture(scope="module")
def host_b(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecondHost]:
    yield from second_host(tmp_path_factory, "vmw-g-hostb")


@pytest.fixture
def tunnel_here() -> Iterator[Tunnel]:
    """``qemu+tcp://localhost:PORT`` to this machine's own daemon."""
    yield from tunnel(LOCAL_SOCKET)


@pytest.fixture
def tunnel_to_b(host_b: SecondHost) -> Iterator[Tunnel]:
    """``qemu+tcp://localhost:PORT`` to the other host: an SSH tunnel's usual spelling."""
    yield from tunnel(host_b.socket_path)


def test_a_tunnel_named_localhost_to_another_host_is_not_local(tunnel_to_b, host_b):
    with LibvirtConnector(tunnel_to_b.uri) as conn:
        assert conn.host == "vmw-g-hostb"
        assert conn.locality.local is False
        assert conn.locality.uuid == host_b.uuid
        assert "not this machine's" in conn.locality.reason
        inv = conn.inventory()
    assert inv.local is False
    assert known_local(tunnel_to_b.uri) is False  # what event-path code asks later


def test_a_tunnel_to_this_machines_daemon_is_local(tunnel_here):
    with LibvirtConnector(tunnel_here.uri) as tunnelled, LibvirtConnector("qemu:///system") as sys:
        assert tunnelled.locality.local is True
        assert sys.locality.local is True
        assert tunnelled.locality.key == sys.locality.key  # one daemon, one key
        assert tunnelled.inventory().local is True
    assert known_local(tunnel_here.uri) is True


def test_a_daemon_with_another_host_uuid_is_not_local_over_any_transport(host_b):
    with LibvirtConnector(host_b.tcp_uri) as tcp, LibvirtConnector(host_b.unix_uri) as unix:
        # the unix socket is in this machine's filesystem, yet the daemon is another host's
        assert tcp.locality.local is False and unix.locality.local is False
        assert tcp.locality.key == unix.locality.key  # same daemon, two URIs
    with LibvirtConnector("qemu:///system") as here:
        assert here.locality.key != tcp.locality.key


def test_the_unix_socket_spellings_of_the_system_daemon_share_one_key():
    with LibvirtConnector("qemu:///system") as a, LibvirtConnector("qemu+unix:///system") as b:
        assert a.locality.key == b.locality.key
        assert a.locality.local and b.locality.local


def test_the_test_driver_is_local_and_keyed_by_its_file(tmp_path):
    with LibvirtConnector("test:///default") as conn:
        assert conn.locality.local is True
        assert conn.locality.key == "test:///default"
        assert conn.inventory().local is True
    assert known_local("test:///never/opened.xml") is True
    assert known_local("qemu+tcp://never-opened.example/system") is False


def test_a_daemon_served_test_driver_is_where_its_daemon_is(tmp_path, host_b):
    """``test+unix://``: libvirtd runs the test driver on a file of *its* host (no host UUID
    of its own): the daemon at the other end of the same socket decides."""
    fleet = tmp_path / "fleet.xml"
    fleet.write_text("<node><domain type='test'><name>vmw-g-t</name><memory>1024</memory>"
                     "<os><type>hvm</type></os></domain></node>")  # fmt: skip
    with LibvirtConnector(f"test+unix://{fleet}") as here:
        assert here.locality.local is True
    # host B's daemon serves "the same path" on its host: not this machine's file
    with LibvirtConnector(f"test+unix://{fleet}?socket={host_b.socket_path}") as there:
        assert there.locality.local is False
        assert there.locality.uuid == host_b.uuid

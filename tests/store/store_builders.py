"""Real model VMs for the store tests (``from tests.store.store_builders import make_vm``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy import create_engine, text

from vmwarden.model import VM, Disk, Layer, Nic, State, VmMeta
from vmwarden.store import Store

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def make_vm(
    i: int,
    *,
    host: str = "kvm1",
    state: State = State.RUNNING,
    name: str | None = None,
    networks: tuple[str, ...] = ("prod",),
    uri: str | None = None,
) -> VM:
    """A VM shaped like what the libvirt connector reads: a disk with a backing chain, NICs."""
    return VM(
        id=f"6c3e0a52-{i >> 16 & 0xFFFF:04x}-4d1e-9c2a-{i:012x}",
        name=name or f"vm{i:05d}",
        host=host,
        uri=uri or f"qemu+ssh://{host}/system",
        state=state,
        vcpus=2,
        memory_kib=2 * 1024 * 1024,
        os_type="hvm",
        arch="x86_64",
        disks=[
            Disk(
                target="vda",
                bus="virtio",
                chain=[
                    Layer(path=f"/var/lib/libvirt/images/vm{i}.qcow2", format="qcow2"),
                    Layer(
                        path="/var/lib/libvirt/images/debian12.qcow2",
                        format="qcow2",
                        digest="sha256:" + "ab" * 32,
                        mtime=datetime(2025, 1, 1, tzinfo=UTC),
                    ),
                ],
            )
        ],
        nics=[
            Nic(
                mac=f"52:54:00:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{(i + n) & 255:02x}",
                type="network",
                network=net,
                model="virtio",
            )
            for n, net in enumerate(networks)
        ],
        meta=VmMeta(owner="alice", classification="internal", registered=True),
    )


@contextmanager
def fresh_pg_store(url: str) -> Iterator[Store]:
    """A store on the scratch PostgreSQL database ``url``, emptied first (its public schema
    dropped and recreated), so each test migrates from nothing."""
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    with Store.open(url) as opened:
        yield opened

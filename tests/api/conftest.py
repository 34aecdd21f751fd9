"""API fixtures: a real SQLite store filled by a real sweep of a test-driver fleet, real
users with real (hashed) tokens, and the app served through Starlette's TestClient."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from vmwarden.api import Settings, create_app
from vmwarden.api.tokens import mint
from vmwarden.engine.fleetgen import (
    FLEET_NETWORKS,
    FleetDisk,
    FleetMeta,
    FleetNic,
    FleetVM,
    generate_fleet,
    write_fleet,
)
from vmwarden.engine.scan import Sweep
from vmwarden.policy import load_policy
from vmwarden.store import Store
from vmwarden.store.users import UsersRepo

OFF_VM = "tst-off-01"  # shut off, persistent: quarantine changes its persistent config
OFF_UUID = "6f1e4c1a-0000-4000-8000-000000000001"
OFF_MAC = "52:54:00:aa:00:01"
RUN_VM = "tst-run-01"  # running, unregistered
PCI_VM = "tst-pci-01"  # pci VM on the prod network: outside its zone
ROLES = ("auditor", "operator", "admin", "admin2")

POLICY = """\
version: 1
zones:
  internal: {networks: [prod], classifications: [internal]}
  pci:      {networks: [pci], classifications: [pci]}
  public:   {networks: [dmz], classifications: [public]}
quarantine: {network: quarantine, link_down: true}
rules:
  - name: unregistered-vm
    resource: vm
    severity: medium
    filters: [unregistered]
  - name: outside-zone
    resource: vm
    severity: high
    filters: [outside-zone]
    actions: [quarantine]
  - name: unapproved-template
    resource: vm
    severity: high
    filters: [not-approved-template]
"""


@dataclass
class Estate:
    root: Path
    db_url: str
    policy: Path
    uris: list[str]
    image_dir: Path
    hosts: dict[str, Path] = field(default_factory=dict)


def _fleet(root: Path, image_dir: Path) -> dict[str, Path]:
    meta = FleetMeta(owner="alice", classification="internal", registered=True)
    hv_a = [
        FleetVM(OFF_UUID, OFF_VM, state="shutoff", metadata=meta,
                disks=[FleetDisk(str(image_dir / "off.qcow2"))],
                nics=[FleetNic(OFF_MAC, "prod")]),
        FleetVM("6f1e4c1a-0000-4000-8000-000000000002", RUN_VM,
                metadata=FleetMeta(owner="bob", classification="internal", registered=False),
                nics=[FleetNic("52:54:00:aa:00:02", "prod")]),
        FleetVM("6f1e4c1a-0000-4000-8000-000000000003", PCI_VM,
                metadata=FleetMeta(owner="carol", classification="pci", registered=True),
                nics=[FleetNic("52:54:00:aa:00:03", "prod")]),
    ]  # fmt: skip
    hosts = {"hv-a": write_fleet(root / "hv-a.xml", hv_a, FLEET_NETWORKS)}
    for host, vms in generate_fleet(24, seed=7, hosts=["hv-b"], image_dir=str(image_dir)).items():
        hosts[host] = write_fleet(root / f"{host}.xml", vms, FLEET_NETWORKS)
    return hosts


@pytest.fixture
def estate(tmp_path: Path) -> Estate:
    image_dir = tmp_path / "images"
    (image_dir / "templates").mkdir(parents=True)
    (image_dir / "templates" / "base.img").write_bytes(b"vmwarden template\n" * 4096)
    hosts = _fleet(tmp_path, image_dir)
    policy = tmp_path / "policy.yaml"
    policy.write_text(textwrap.dedent(POLICY))
    e = Estate(
        root=tmp_path,
        db_url=f"sqlite:///{tmp_path / 'vmwarden.db'}",
        policy=policy,
        uris=[f"test://{p}" for p in hosts.values()],
        image_dir=image_dir,
        hosts=hosts,
    )
    with Store.open(e.db_url) as store:
        Sweep(store, load_policy(policy), actor="tester").run(e.uris)
    return e


@pytest.fixture
def tokens(estate: Estate) -> dict[str, str]:
    """A fresh token per role name (``admin2`` is a second admin)."""
    out = {}
    with Store.open(estate.db_url) as store:
        repo = UsersRepo(store)
        for name in ROLES:
            token, tid, token_hash = mint()
            repo.add_user(name, name.rstrip("2"), tid, token_hash, actor="setup")
            out[name] = token
    return out


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def settings(estate: Estate) -> Settings:
    return Settings(
        db_url=estate.db_url,
        policy_path=estate.policy,
        uris=tuple(estate.uris),
        image_dirs=(estate.image_dir / "templates",),
        web=False,
    )


@pytest.fixture
def client(settings: Settings, tokens: dict[str, str]) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        yield c


class As:
    """A client that sends one user's token with every request."""

    def __init__(self, client: TestClient, token: str) -> None:
        self.client = client
        self.headers = auth(token)

    def get(self, url: str, **kw: object):
        return self.client.get(url, headers=self.headers, **kw)

    def post(self, url: str, **kw: object):
        return self.client.post(url, headers=self.headers, **kw)


@pytest.fixture
def users(client: TestClient, tokens: dict[str, str]) -> dict[str, As]:
    return {name: As(client, token) for name, token in tokens.items()}

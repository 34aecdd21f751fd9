"""The real app over a real SQLite store, served by uvicorn on 127.0.0.1, driven by Chromium.

The store holds the demo estate (test-driver hosts, swept with enforcement so the quarantine
queue and the audit log have entries) plus, for the libvirtd tests, real shut-off VMs named
``vmw-web-*`` on the integration fixtures' networks. Users are made the way
``vmwarden user add`` makes them: a minted token, only its argon2 hash stored.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import libvirt
import pytest
import uvicorn
from fastapi import FastAPI

from tests.integration.conftest import (  # noqa: F401  (fixtures, re-exported for tests/web)
    IMAGES,
    URI,
    domain_xml,
    make_base,
    networks,
    system_conn,
    virt_type,
)
from vmwarden.api import Settings, create_app
from vmwarden.api.tokens import mint
from vmwarden.connectors import open_connector
from vmwarden.enforce import Quarantiner, QuarantineSpec
from vmwarden.engine.demo import build_demo_estate
from vmwarden.engine.scan import Sweep
from vmwarden.policy import load_policy
from vmwarden.store import Store
from vmwarden.store.users import UsersRepo

REPO = Path(__file__).resolve().parents[2]
SHOTS = REPO / "test-artifacts" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--headless"]


# Who signs in: key -> (role, name). Two admins, so one can decide the other's request.
PEOPLE = {
    "operator": ("operator", "olga"),
    "auditor": ("auditor", "artur"),
    "admin": ("admin", "ada"),
    "admin2": ("admin", "bea"),
}


@dataclass
class Demo:
    """The demo estate swept (with enforcement) into a fresh store, and its people."""

    db_url: str
    policy: Path
    uris: tuple[str, ...]
    images_dir: Path
    tokens: dict[str, str]  # PEOPLE key -> token
    names: dict[str, str]  # PEOPLE key -> user name

    def settings(self) -> Settings:
        return Settings(
            db_url=self.db_url,
            policy_path=self.policy,
            uris=self.uris,
            image_dirs=(self.images_dir,),
        )


def build_demo(work: Path) -> Demo:
    demo = build_demo_estate(work / "demo")
    db_url = f"sqlite:///{work / 'vmwarden.db'}"
    tokens, names = {}, {}
    with Store.open(db_url) as store:
        Sweep(store, load_policy(demo.policy_path), actor="ci").run(demo.uris, enforce=True)
        for key, (role, name) in PEOPLE.items():
            token, token_id, token_hash = mint()
            UsersRepo(store).add_user(name, role, token_id, token_hash, actor="ci", reason="test")
            tokens[key], names[key] = token, name
    return Demo(db_url, demo.policy_path, tuple(demo.uris), demo.images_dir, tokens, names)


@dataclass
class Served:
    base: str
    db_url: str
    policy: Path
    tokens: dict[str, str]  # PEOPLE key -> token
    names: dict[str, str]  # PEOPLE key -> user name
    app: FastAPI  # its app.state.vmwarden.connections is the libvirt connection it acts by


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve_app(app: FastAPI, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free port in a thread; yields its base URL."""
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    demo = build_demo(tmp_path_factory.mktemp("web"))
    app = create_app(demo.settings())
    with serve_app(app) as base:
        yield Served(base, demo.db_url, demo.policy, demo.tokens, demo.names, app)


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        raise RuntimeError(f"{CHROMIUM} missing: run scripts/install-deps.sh (apt chromium)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: object) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1440, "height": 900})  # type: ignore[attr-defined]
    pg = context.new_page()
    yield pg
    context.close()


def login(page: object, served: Served, role: str) -> None:
    """Sign in as ``role`` (a PEOPLE key), signing out whoever was signed in first."""
    page.context.clear_cookies()  # type: ignore[attr-defined]
    page.goto(served.base + "/")  # type: ignore[attr-defined]
    page.fill("#token", served.tokens[role])  # type: ignore[attr-defined]
    page.click("form[action='/login'] button[type=submit]")  # type: ignore[attr-defined]
    page.wait_for_url(served.base + "/")  # type: ignore[attr-defined]


def shot(page: object, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
    return path


# -- real libvirtd ----------------------------------------------------------------------


@dataclass
class RealVM:
    name: str
    id: str
    mac: str


@pytest.fixture
def quarantined_vm(
    served: Served,
    system_conn: libvirt.virConnect,  # noqa: F811
    virt_type: str,  # noqa: F811
    networks: dict[str, str],  # noqa: F811
) -> Iterator[RealVM]:
    """A shut-off ``vmw-web-*`` VM on ``prod``, in the store and quarantined by vmwarden."""
    tag = uuid.uuid4().hex[:8]
    name, mac = f"vmw-web-{tag}", f"52:54:00:77:{tag[:2]}:{tag[2:4]}"
    folder = IMAGES / f"vmwarden-web-{tag}"
    folder.mkdir(parents=True)
    disk = make_base(folder / "disk.qcow2")
    meta = {"owner": "wendy", "classification": "internal", "registered": "yes"}
    dom = system_conn.defineXML(
        domain_xml(name, virt_type, disk, [{"mac": mac, "network": "prod"}], meta)
    )
    try:
        with Store.open(served.db_url) as store, open_connector(URI) as conn:
            vm = conn.lookup(name)
            store.record_inventory([vm], now=datetime.now(UTC), complete_hosts=set())
            rec = Quarantiner(store, "ci").quarantine(
                conn, vm, QuarantineSpec(network="quarantine"), reason="web test", rule=None
            )
            assert rec.status == "done", rec
        yield RealVM(name, dom.UUIDString(), mac)
    finally:
        with contextlib.suppress(libvirt.libvirtError):
            system_conn.lookupByName(name).undefineFlags(
                libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
            )
        shutil.rmtree(folder, ignore_errors=True)

"""Every dashboard form over HTTP: role x route, CSRF, segregation of duties, the audit trail.

One demo estate (libvirt test driver, swept with enforcement) per module, served in-process;
each test acts on VMs, findings and exceptions of its own, so none depends on another's
order. What a write did is read back from the store (the journal is the audit log).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.web.conftest import Demo, build_demo
from vmwarden.api import Settings, create_app
from vmwarden.store import Store
from vmwarden.store.exceptions import ExceptionsRepo
from vmwarden.store.pages import FindingQuery, JournalQuery, Pages
from vmwarden.store.session_admin import public_id
from vmwarden.store.sessions import SessionsRepo
from vmwarden.store.users import UsersRepo
from vmwarden.web import actions

FLASH = re.compile(r'class="flash flash-(ok|error)"[^>]*>([^<]*)<')
POST_FORM = re.compile(r'<form method="post" action="([^"]+)"')


@dataclass
class Site:
    demo: Demo
    app: FastAPI
    store: Store

    def vm_id(self, name: str) -> str:
        return self.store.get_vm(name)["id"]

    def journal(self, **query: Any) -> list[Any]:
        entries, _ = Pages(self.store).journal(JournalQuery(**query), limit=500, offset=0)
        return entries

    def open_findings(self) -> list[dict[str, Any]]:
        rows, _ = Pages(self.store).findings(FindingQuery(status="open"), limit=500, offset=0)
        return rows


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    demo = build_demo(tmp_path_factory.mktemp("forms"))
    app = create_app(demo.settings())
    with TestClient(app):  # runs the lifespan: the app's store is open for the module
        yield Site(demo, app, app.state.vmwarden.store)


def csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def client_as(site: Site, who: str) -> TestClient:
    client = TestClient(site.app)
    form = client.get("/login")
    resp = client.post(
        "/login",
        data={"token": site.demo.tokens[who], "csrf_token": csrf(form.text)},
        follow_redirects=False,
    )
    assert resp.status_code == 303, resp.text
    return client


def post(client: TestClient, path: str, data: dict[str, str]) -> tuple[int, list[tuple]]:
    """Post a form with the session's CSRF token; (status, flash messages of the next page)."""
    token = csrf(client.get("/").text)
    resp = client.post(path, data={**data, "csrf_token": token})
    return resp.status_code, FLASH.findall(resp.text)


def soon(days: int = 30) -> str:
    return (date.today() + timedelta(days=days)).isoformat()


# -- role x route -------------------------------------------------------------------------
# Each route: how to make a target of its own (run as "ci", outside the browser), the form,
# the journal action it writes, and the lowest role allowed.


@dataclass
class Route:
    lowest: str
    action: str
    setup: Callable[[Site, str], tuple[str, dict[str, str]]]  # -> (path, form)


def _quarantine(site: Site, who: str) -> tuple[str, dict[str, str]]:
    # Shut-off VMs: the test driver cannot change a running domain's NICs live.
    vm = {"auditor": "east-app-05", "operator": "east-web-04", "admin": "west-web-04"}[who]
    return f"/vms/{site.vm_id(vm)}/quarantine", {"reason": f"matrix quarantine by {who}"}


def _release(site: Site, who: str) -> tuple[str, dict[str, str]]:
    vm = {"auditor": "dmz-web-04", "operator": "east-db-10", "admin": "west-db-10"}[who]
    vm_id = site.vm_id(vm)
    rec = actions.quarantine_vm(site.app.state.vmwarden, "ci", vm_id, "setup for release")
    assert rec.status == "done", rec
    return f"/quarantine/{vm_id}/release", {"reason": f"matrix release by {who}"}


def _acknowledge(site: Site, who: str) -> tuple[str, dict[str, str]]:
    unacked = [f for f in site.open_findings() if not f["acknowledged"]]
    index = {"auditor": 0, "operator": 1, "admin": 2}[who]
    finding = unacked[index]
    return f"/findings/{finding['id']}/acknowledge", {
        "reason": f"matrix acknowledge by {who}",
        "until": soon(),
    }


def _request(site: Site, who: str) -> tuple[str, dict[str, str]]:
    form = {"rule": "dormant", "vm": "west-archive-01", "until": soon()}
    return "/exceptions", {**form, "reason": f"matrix request by {who}"}


def _requested_by_ci(site: Site) -> int:
    vm_id = site.vm_id("dmz-old-cms")
    until = datetime.now(UTC) + timedelta(days=10)
    ex = ExceptionsRepo(site.store).request_exception(
        "dormant", vm_id, "dmz-old-cms", until, "archive kept for legal hold", actor="ci-ops"
    )  # not "ci", who created every user: none of them could decide it (two-person rule)
    return ex["id"]


def _approve(site: Site, who: str) -> tuple[str, dict[str, str]]:
    return f"/exceptions/{_requested_by_ci(site)}/approve", {"reason": f"matrix approve by {who}"}


def _reject(site: Site, who: str) -> tuple[str, dict[str, str]]:
    return f"/exceptions/{_requested_by_ci(site)}/reject", {"reason": f"matrix reject by {who}"}


def _template(site: Site, who: str) -> tuple[str, dict[str, str]]:
    path = site.demo.images_dir / "templates" / "debian12-base.qcow2"
    return "/templates", {
        "name": f"matrix-{who}",
        "path": str(path),
        "reason": f"matrix template by {who}",
    }


def _end_session(site: Site, who: str) -> tuple[str, dict[str, str]]:
    """A live session of the operator (as sign-in makes one), to be ended by ``who``."""
    sid_hash = hashlib.sha256(f"matrix-{who}-{uuid.uuid4()}".encode()).hexdigest()
    olga = UsersRepo(site.store).get_user(site.demo.names["operator"])
    SessionsRepo(site.store).create(sid_hash, olga.id, source="192.0.2.8")
    return f"/sessions/{public_id(sid_hash)}/end", {"reason": f"matrix end-session by {who}"}


ROUTES = {
    "quarantine": Route("operator", "quarantine", _quarantine),
    "release": Route("operator", "release", _release),
    "acknowledge": Route("operator", "finding-acknowledge", _acknowledge),
    "request-exception": Route("operator", "exception-request", _request),
    "approve-exception": Route("admin", "exception-approve", _approve),
    "reject-exception": Route("admin", "exception-reject", _reject),
    "approve-template": Route("admin", "template-approve", _template),
    "end-session": Route("admin", "session-end", _end_session),
}
RANK = {"auditor": 0, "operator": 1, "admin": 2}


@pytest.mark.parametrize("who", ["auditor", "operator", "admin"])
@pytest.mark.parametrize("route", list(ROUTES))
def test_role_route_matrix(site: Site, route: str, who: str):
    spec = ROUTES[route]
    path, form = spec.setup(site, who)
    name = site.demo.names[who]
    with client_as(site, who) as client:
        status, flashes = post(client, path, form)
    written = [
        e for e in site.journal(actor=name, action=spec.action) if e.reason == form["reason"]
    ]
    if RANK[who] >= RANK[spec.lowest]:
        assert status == 200, flashes  # 303 to the page the form was on, then that page
        assert flashes and flashes[0][0] == "ok", flashes
        assert len(written) == 1, f"{route}: no journal entry by {name} with the reason"
        assert written[0].actor == name and written[0].created_at is not None
        with client_as(site, "auditor") as auditor:  # and the auditor can prove it
            log = auditor.get("/audit", params={"action": spec.action, "actor": name}).text
        row = log[log.index(form["reason"]) - 2000 : log.index(form["reason"])]
        assert f"<td>{name}</td>" in row and f"<td>{spec.action}</td>" in row
    else:
        assert status == 403
        assert written == []


# -- CSRF and sessions --------------------------------------------------------------------


def test_every_form_post_needs_the_sessions_csrf_token(site: Site):
    with client_as(site, "admin") as client:
        for route, spec in ROUTES.items():
            if route == "release":
                path = f"/quarantine/{site.vm_id('east-web-08')}/release"
            else:
                path, _ = spec.setup(site, "admin")
            form = {
                "reason": "csrf probe",
                "until": soon(),
                "rule": "dormant",
                "vm": "east-legacy-01",
                "name": "csrf-probe",
                "path": str(site.demo.images_dir / "templates" / "debian12-base.qcow2"),
            }
            for extra in ({}, {"csrf_token": "x" * 43}, {"csrf_token": ""}):
                resp = client.post(path, data={**form, **extra}, follow_redirects=False)
                assert resp.status_code == 403, (route, extra)
    assert [e for e in site.journal() if e.reason == "csrf probe"] == []
    assert "csrf-probe" not in {t["name"] for t in site.store.templates()}


def test_a_post_without_a_session_is_401(site: Site):
    client = TestClient(site.app)
    for route, spec in ROUTES.items():
        if route in ("release", "approve-exception", "reject-exception"):
            continue  # their setups write; the path shape is covered by the others
        path, form = spec.setup(site, "auditor")
        assert client.post(path, data=form, follow_redirects=False).status_code == 401


# -- auditors read everything, change nothing ----------------------------------------------


def test_an_auditor_sees_every_page_with_no_form_but_sign_out(site: Site):
    held = site.vm_id("east-rogue-miner")  # quarantined by the enforcing sweep
    free = site.vm_id("east-build-04")
    pages = ["/", "/vms", f"/vms/{held}", f"/vms/{free}", "/findings", "/quarantine",
             "/exceptions", "/exceptions?status=requested", "/templates", "/audit"]  # fmt: skip
    with client_as(site, "auditor") as client:
        for path in pages:
            resp = client.get(path)
            assert resp.status_code == 200, path
            assert POST_FORM.findall(resp.text) == ["/logout"], path
            for word in ("Acknowledge…", ">Quarantine</button>", ">Approve</button>",
                         "Approve an image", "Request an exception"):  # fmt: skip
                assert word not in resp.text, (path, word)


def test_an_operator_sees_the_forms_of_their_role_only(site: Site):
    with client_as(site, "operator") as client:
        vm = client.get(f"/vms/{site.vm_id('east-build-04')}").text
        assert f"/vms/{site.vm_id('east-build-04')}/quarantine" in POST_FORM.findall(vm)
        assert "quarantine" in vm and "with its link down" in vm
        assert "/acknowledge" in client.get("/findings").text
        exceptions = client.get("/exceptions").text
        assert 'action="/exceptions"' in exceptions and "/approve" not in exceptions
        assert "Approve an image" not in client.get("/templates").text


# -- what each form does, and refuses -----------------------------------------------------


def test_quarantine_from_the_vm_page_moves_the_nics_and_release_puts_them_back(site: Site):
    vm_id = site.vm_id("west-ledger-09")  # shut off, no findings
    state = site.app.state.vmwarden
    with client_as(site, "operator") as client:
        status, flashes = post(client, f"/vms/{vm_id}/quarantine", {"reason": "IR-77 beacon"})
        assert status == 200 and flashes[0][0] == "ok", flashes
        page = client.get(f"/vms/{vm_id}").text
        assert "In quarantine since" in page and "IR-77 beacon" in page
        with state.connections.connection(site.store.get_vm(vm_id)["uri"]) as conn:
            nets = {n.network for n in conn.lookup(vm_id).nics}
        assert nets == {"quarantine"}
        status, flashes = post(
            client, f"/quarantine/{vm_id}/release?from=vm", {"reason": "reimaged"}
        )
        assert flashes[0][0] == "ok", flashes
        with state.connections.connection(site.store.get_vm(vm_id)["uri"]) as conn:
            assert "quarantine" not in {n.network for n in conn.lookup(vm_id).nics}


def test_quarantine_needs_a_reason_and_a_live_vm(site: Site):
    vm_id = site.vm_id("east-db-02")
    with client_as(site, "operator") as client:
        for reason in ("", "   "):
            _, flashes = post(client, f"/vms/{vm_id}/quarantine", {"reason": reason})
            assert flashes and flashes[0][0] == "error", flashes
        _, flashes = post(client, "/vms/no-such-vm/quarantine", {"reason": "x"})
        assert "not in the store" in flashes[0][1]
    assert site.store.active_quarantine(vm_id) is None


def test_acknowledged_findings_show_as_such(site: Site):
    finding = [f for f in site.open_findings() if not f["acknowledged"]][-1]
    with client_as(site, "operator") as client:
        _, flashes = post(
            client,
            f"/findings/{finding['id']}/acknowledge",
            {
                "reason": "owner is migrating it, CHG-12",
                "until": "",
                "back": "https://evil.example/",
            },
        )
        assert flashes[0][0] == "ok", flashes
        page = client.get("/findings?ack=yes").text
        row = page[page.index(f'id="finding-{finding["id"]}"') :].split("</tr>")[0]
        assert "acknowledged" in row and "olga" in row and "CHG-12" in row
        assert f"/findings/{finding['id']}/acknowledge" not in page  # no second form
        assert f'id="finding-{finding["id"]}"' not in client.get("/findings?ack=no").text
        if finding["resource"] == "vm":
            assert "CHG-12" in client.get(f"/vms/{finding['resource_id']}").text


def test_acknowledge_refuses_a_past_until_and_a_missing_reason(site: Site):
    finding = [f for f in site.open_findings() if not f["acknowledged"]][-1]
    path = f"/findings/{finding['id']}/acknowledge"
    with client_as(site, "operator") as client:
        for form in ({"reason": "x", "until": "2001-01-01"}, {"reason": " ", "until": ""},
                     {"reason": "x", "until": "soon"}):  # fmt: skip
            _, flashes = post(client, path, form)
            assert flashes[0][0] == "error", form
        _, flashes = post(client, "/findings/999999/acknowledge", {"reason": "x"})
        assert "no finding" in flashes[0][1]
    assert Pages(site.store).finding(finding["id"])["acknowledged"] is None


def test_exception_requests_are_checked_like_the_api(site: Site):
    bad = [
        ({"rule": "no-such-rule", "vm": "east-legacy-01", "until": soon()}, "no rule"),
        ({"rule": "dormant", "vm": "no-such-vm", "until": soon()}, "no VM"),
        ({"rule": "dormant", "vm": "east-legacy-01", "until": "2001-01-01"}, "future"),
        ({"rule": "dormant", "vm": "east-legacy-01", "until": soon(400)}, "366 days"),
        ({"rule": "dormant", "vm": "east-legacy-01", "until": ""}, "until"),
    ]
    before = ExceptionsRepo(site.store).list_exceptions(limit=1)[1]
    with client_as(site, "operator") as client:
        for form, says in bad:
            _, flashes = post(client, "/exceptions", {**form, "reason": "vendor fix due"})
            assert flashes[0][0] == "error" and says in flashes[0][1], (form, flashes)
        _, flashes = post(
            client,
            "/exceptions",
            {"rule": "dormant", "vm": "east-legacy-01", "until": soon(), "reason": ""},
        )
        assert flashes[0][0] == "error"
    assert ExceptionsRepo(site.store).list_exceptions(limit=1)[1] == before


def test_an_admin_cannot_decide_their_own_request_a_second_admin_can(site: Site):
    reason = f"legal hold {uuid.uuid4().hex[:6]}"
    with client_as(site, "admin") as ada:
        _, flashes = post(
            ada, "/exceptions",
            {"rule": "dormant", "vm": "west-archive-01", "until": soon(), "reason": reason},
        )  # fmt: skip
        assert flashes[0][0] == "ok", flashes
        (ex,) = [
            e for e in ExceptionsRepo(site.store).list_exceptions(limit=50)[0]
            if e["reason"] == reason
        ]  # fmt: skip
        page = ada.get("/exceptions?status=requested").text
        row = page[page.index(f'id="exception-{ex["id"]}"') :].split("</tr>")[0]
        assert "your request: another admin decides" in row and "<form" not in row
        for verb in ("approve", "reject"):
            status, _ = post(ada, f"/exceptions/{ex['id']}/{verb}", {"reason": "mine"})
            assert status == 403
    assert ExceptionsRepo(site.store).get_exception(ex["id"])["status"] == "requested"
    assert [e for e in site.journal(actor="ada") if e.reason == "mine"] == []
    with client_as(site, "admin2") as bea:
        page = bea.get("/exceptions?status=requested").text
        assert f'action="/exceptions/{ex["id"]}/approve"' in page
        _, flashes = post(bea, f"/exceptions/{ex['id']}/approve", {"reason": "risk accepted"})
        assert flashes[0][0] == "ok", flashes
        # Deciding again is refused by the store, said on the page.
        _, flashes = post(bea, f"/exceptions/{ex['id']}/reject", {"reason": "changed my mind"})
        assert flashes[0][0] == "error" and "already approved" in flashes[0][1]
        page = bea.get("/exceptions?status=approved").text
        row = page[page.index(f'id="exception-{ex["id"]}"') :].split("</tr>")[0]
        assert "ada" in row and "bea" in row and "risk accepted" in row
    decided = ExceptionsRepo(site.store).get_exception(ex["id"])
    assert (decided["status"], decided["requested_by"], decided["decided_by"]) == (
        "approved", "ada", "bea",
    )  # fmt: skip
    (entry,) = [e for e in site.journal(actor="bea", action="exception-approve")
                if e.changes.get("exception_id") == ex["id"]]  # fmt: skip
    assert entry.reason == "risk accepted" and entry.changes["requested_by"] == "ada"


def test_template_approval_reads_only_inside_the_image_dirs(site: Site, tmp_path: Path):
    inside = site.demo.images_dir
    secret = tmp_path / "outside.qcow2"
    secret.write_bytes(b"not yours")
    link = inside / f"link-{uuid.uuid4().hex[:6]}.qcow2"
    link.symlink_to(secret)
    hostile = [
        "/etc/passwd",
        "templates/debian12-base.qcow2",  # relative
        f"{inside}/../../../../etc/passwd",
        str(link),  # a symlink inside pointing outside
        str(inside / "templates"),  # a directory
        str(inside / "missing.qcow2"),
    ]
    try:
        with client_as(site, "admin") as client:
            for path in hostile:
                _, flashes = post(client, "/templates", {"name": "evil", "path": path})
                assert flashes and flashes[0][0] == "error", (path, flashes)
            _, flashes = post(client, "/templates", {"name": "bad name!", "path": str(link)})
            assert flashes[0][0] == "error"
            good = inside / "templates" / "debian12-base.qcow2"
            _, flashes = post(
                client,
                "/templates",
                {
                    "name": "debian12-gold",
                    "path": str(good),
                    "reason": "CIS build 2024-11",
                },
            )
            assert flashes[0][0] == "ok", flashes
            page = client.get("/templates").text
            assert "debian12-gold" in page and "ada" in page and str(good) in page
    finally:
        link.unlink()
    names = {t["name"] for t in site.store.templates()}
    assert "evil" not in names and "debian12-gold" in names


def test_a_server_without_policy_or_image_dirs_says_what_is_missing(tmp_path: Path):
    demo = build_demo(tmp_path)
    app = create_app(Settings(db_url=demo.db_url))  # no policy, no image dirs
    with TestClient(app):
        site = Site(demo, app, app.state.vmwarden.store)
        with client_as(site, "admin") as client:
            page = client.get(f"/vms/{site.vm_id('east-build-04')}").text
            assert "Quarantine is not available on this server" in page
            assert '/quarantine"' not in "".join(POST_FORM.findall(page))
            assert "no image directories" in client.get("/templates").text
            _, flashes = post(client, f"/vms/{site.vm_id('east-build-04')}/quarantine",
                              {"reason": "x"})  # fmt: skip
            assert flashes[0][0] == "error" and "no policy" in flashes[0][1]

"""Writes over HTTP: quarantine and release seen through libvirt, exceptions with segregation
of duties, acknowledgements, template approval of hostile paths, scans, and the audit log."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import OFF_MAC, OFF_UUID, OFF_VM, PCI_VM, RUN_VM
from vmwarden.api import Settings, create_app
from vmwarden.inspect.digest import digest_file


def _until(days: float = 7) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


def _config_xml(client: TestClient, uri: str, vm_id: str) -> str:
    """The persistent <interface> XML, read through the connection the API acted through."""
    with client.app.state.vmwarden.connections.connection(uri) as conn:
        (snap,) = [s for s in conn.nic_snapshot(vm_id) if s.mac == OFF_MAC]
    return snap.config_xml


def test_quarantine_and_release_a_shut_off_vm(client, users, estate):
    uri = f"test://{estate.hosts['hv-a']}"
    assert "network='prod'" in _config_xml(client, uri, OFF_UUID).replace('"', "'")

    q = users["operator"].post(f"/api/vms/{OFF_VM}/quarantine", json={"reason": "IR-42"})
    assert q.status_code == 200, q.text
    rec = q.json()
    assert (rec["action"], rec["status"], rec["actor"], rec["reason"]) == (
        "quarantine", "done", "operator", "IR-42"
    )  # fmt: skip
    (nic,) = rec["changes"]["nics"]
    assert (nic["config"], nic["live"]) == ("done", "skipped")  # shut off: persistent only
    xml = _config_xml(client, uri, OFF_UUID).replace('"', "'")
    assert "network='quarantine'" in xml and "state='down'" in xml

    detail = users["auditor"].get(f"/api/vms/{OFF_VM}").json()
    assert detail["quarantine"]["id"] == rec["id"]
    again = users["operator"].post(f"/api/vms/{OFF_VM}/quarantine", json={"reason": "again"})
    assert again.json()["status"] == "noop"

    assert users["operator"].post(f"/api/vms/{OFF_VM}/release", json={}).status_code == 422
    blank = users["operator"].post(f"/api/vms/{OFF_VM}/release", json={"reason": "   "})
    assert blank.status_code == 422
    r = users["operator"].post(f"/api/vms/{OFF_VM}/release", json={"reason": "rebuilt"})
    assert r.status_code == 200 and r.json()["status"] == "done"
    assert "network='prod'" in _config_xml(client, uri, OFF_UUID).replace('"', "'")

    actions = users["auditor"].get("/api/actions", params={"vm": OFF_VM}).json()["items"]
    assert [(a["action"], a["status"]) for a in actions] == [
        ("release", "done"), ("quarantine", "released")
    ]  # fmt: skip
    assert users["auditor"].get(f"/api/vms/{OFF_VM}").json()["quarantine"] is None
    again = users["operator"].post(f"/api/vms/{OFF_VM}/release", json={"reason": "twice"})
    assert again.status_code == 409 and "not quarantined" in again.json()["detail"]


def test_quarantine_without_a_policy_or_network_is_409(estate, tokens):
    settings = Settings(db_url=estate.db_url, web=False)
    with TestClient(create_app(settings)) as c:
        r = c.post(f"/api/vms/{OFF_VM}/quarantine", json={"reason": "x"},
                   headers={"Authorization": f"Bearer {tokens['operator']}"})  # fmt: skip
    assert r.status_code == 409 and "policy" in r.json()["detail"]


def test_exception_needs_a_second_person(users):
    body = {"rule": "unregistered-vm", "vm": RUN_VM, "until": _until(), "reason": "vendor fix"}
    requested = users["admin"].post("/api/exceptions", json=body)
    assert requested.status_code == 201, requested.text
    ex = requested.json()
    assert ex["status"] == "requested" and ex["requested_by"] == "admin"

    own = users["admin"].post(f"/api/exceptions/{ex['id']}/approve", json={"reason": "mine"})
    assert own.status_code == 403 and "another" in own.json()["detail"]
    ok = users["admin2"].post(f"/api/exceptions/{ex['id']}/approve", json={"reason": "accepted"})
    assert ok.status_code == 200
    assert (ok.json()["status"], ok.json()["decided_by"]) == ("approved", "admin2")
    twice = users["admin2"].post(f"/api/exceptions/{ex['id']}/reject", json={})
    assert twice.status_code == 409

    listed = users["auditor"].get("/api/exceptions", params={"status": "approved"}).json()
    assert [e["id"] for e in listed["items"]] == [ex["id"]]
    assert users["auditor"].get(f"/api/vms/{RUN_VM}").json()["exceptions"][0]["id"] == ex["id"]
    assert users["auditor"].get(f"/api/exceptions/{ex['id']}").json()["status"] == "approved"
    assert users["auditor"].get("/api/exceptions/9999").status_code == 404


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"until": "2001-01-01T00:00:00Z"}, 422),  # past
        ({"until": _until(400)}, 422),  # more than a year
        ({"until": "2099-01-01T00:00:00"}, 422),  # no time zone
        ({"rule": "no-such-rule"}, 422),
        ({"vm": "no-such-vm"}, 404),
        ({"reason": ""}, 422),
        ({"extra": 1}, 422),
    ],
)
def test_exception_request_validation(users, change, status):
    body = {"rule": "unregistered-vm", "vm": RUN_VM, "until": _until(), "reason": "r"} | change
    r = users["operator"].post("/api/exceptions", json=body)
    assert r.status_code == status, r.text


def test_acknowledge_a_finding(users):
    (finding,) = (
        users["auditor"]
        .get("/api/findings", params={"rule": "outside-zone", "host": "hv-a"})
        .json()["items"]
    )
    assert finding["acknowledged"] is None
    url = f"/api/findings/{finding['id']}/acknowledge"
    assert (
        users["operator"]
        .post(url, json={"reason": "x", "until": "2001-01-01T00:00:00Z"})
        .status_code
        == 422
    )
    r = users["operator"].post(url, json={"reason": "move planned", "until": _until(3)})
    assert r.status_code == 201 and r.json()["actor"] == "operator"
    got = users["auditor"].get(f"/api/findings/{finding['id']}").json()
    assert got["acknowledged"]["reason"] == "move planned" and got["status"] == "open"
    acked = users["auditor"].get("/api/findings", params={"acknowledged": True}).json()
    assert [f["id"] for f in acked["items"]] == [finding["id"]]
    rest = users["auditor"].get("/api/findings", params={"acknowledged": False}).json()
    assert finding["id"] not in [f["id"] for f in rest["items"]]
    assert (
        users["operator"].post("/api/findings/999999/acknowledge", json={"reason": "x"}).status_code
        == 404
    )


def test_approve_a_template_inside_the_image_dir(users, estate):
    path = estate.image_dir / "templates" / "base.img"
    r = users["admin"].post(
        "/api/templates", json={"path": str(path), "name": "base-v1", "reason": "CIS-hardened"}
    )
    assert r.status_code == 201, r.text
    t = r.json()
    assert t["digest"] == digest_file(path) and t["path"] == str(path)
    assert t["fingerprint"]["path"] == str(path) and t["approved_by"] == "admin"
    assert [x["name"] for x in users["auditor"].get("/api/templates").json()] == ["base-v1"]
    (event,) = (
        users["auditor"].get("/api/audit", params={"action": "template-approve"}).json()["items"]
    )
    assert (event["actor"], event["reason"]) == ("admin", "CIS-hardened")


@pytest.mark.parametrize(
    ("make", "status"),
    [
        (lambda e: "/etc/passwd", 422),
        (lambda e: "templates/base.img", 422),  # relative
        (lambda e: str(e.image_dir / "templates" / ".." / "off.qcow2"), 422),  # climbs out
        (lambda e: str(e.image_dir / "templates" / "missing.img"), 404),
        (lambda e: str(e.image_dir / "templates"), 422),  # a directory
        (lambda e: str(e.image_dir / "templates" / "link-out"), 422),  # symlink to /etc
        (lambda e: "/proc/self/environ", 422),
    ],
)
def test_template_paths_are_hostile_input(users, estate, make, status):
    (estate.image_dir / "off.qcow2").write_bytes(b"outside the allowed dir")
    os.symlink("/etc/hostname", estate.image_dir / "templates" / "link-out")
    r = users["admin"].post("/api/templates", json={"path": make(estate), "name": "evil"})
    assert r.status_code == status, r.text
    assert users["auditor"].get("/api/templates").json() == []


def test_template_approval_without_image_dirs_is_409(estate, tokens):
    settings = Settings(db_url=estate.db_url, web=False)
    with TestClient(create_app(settings)) as c:
        r = c.post("/api/templates", json={"path": "/etc/hostname", "name": "x"},
                   headers={"Authorization": f"Bearer {tokens['admin']}"})  # fmt: skip
    assert r.status_code == 409 and "--image-dir" in r.json()["detail"]


def test_trigger_a_scan_and_follow_the_job(client, users):
    r = users["admin"].post("/api/scans", json={"reason": "after patching"})
    assert r.status_code == 202, r.text
    job = r.json()
    done = client.app.state.vmwarden.jobs.wait(job["id"], 60)
    assert done.status == "done", done.error
    got = users["auditor"].get(f"/api/scans/jobs/{job['id']}").json()
    assert got["status"] == "done" and got["summary"]["vms"] == 27
    assert got["requested_by"] == "admin"
    assert len(users["auditor"].get("/api/scans").json()) == 2
    assert users["auditor"].get("/api/scans/jobs/" + "0" * 32).status_code == 404
    (event,) = users["auditor"].get("/api/audit", params={"action": "scan-request"}).json()["items"]
    assert (event["actor"], event["reason"]) == ("admin", "after patching")


def test_every_write_is_in_the_audit_log_with_user_and_reason(client, users, estate):
    since = datetime.now(UTC).isoformat()
    users["operator"].post(f"/api/vms/{OFF_VM}/quarantine", json={"reason": "r-quarantine"})
    users["operator"].post(f"/api/vms/{OFF_VM}/release", json={"reason": "r-release"})
    fid = users["auditor"].get("/api/findings").json()["items"][0]["id"]
    users["operator"].post(f"/api/findings/{fid}/acknowledge", json={"reason": "r-ack"})
    body = {"rule": "outside-zone", "vm": PCI_VM, "until": _until(), "reason": "r-request"}
    ex = users["operator"].post("/api/exceptions", json=body).json()
    users["admin"].post(f"/api/exceptions/{ex['id']}/approve", json={"reason": "r-approve"})
    path = str(estate.image_dir / "templates" / "base.img")
    users["admin"].post("/api/templates", json={"path": path, "name": "t", "reason": "r-tmpl"})
    job = users["admin"].post("/api/scans", json={"reason": "r-scan"}).json()
    client.app.state.vmwarden.jobs.wait(job["id"], 60)
    users["admin"].post("/api/users", json={"name": "zed", "role": "auditor", "reason": "r-add"})
    users["admin"].post("/api/users/zed/rotate", json={"reason": "r-rotate"})
    users["admin"].post("/api/users/zed/disable", json={"reason": "r-disable"})

    log = users["auditor"].get("/api/audit", params={"since": since, "limit": 500}).json()
    by_action = {e["action"]: e for e in log["items"] if e["actor"] != "tester"}
    expected = {
        "quarantine": ("operator", "r-quarantine"),
        "release": ("operator", "r-release"),
        "finding-acknowledge": ("operator", "r-ack"),
        "exception-request": ("operator", "r-request"),
        "exception-approve": ("admin", "r-approve"),
        "template-approve": ("admin", "r-tmpl"),
        "scan-request": ("admin", "r-scan"),
        "user-add": ("admin", "r-add"),
        "user-rotate": ("admin", "r-rotate"),
        "user-disable": ("admin", "r-disable"),
    }
    for action, (actor, reason) in expected.items():
        entry = by_action[action]
        assert (entry["actor"], entry["reason"]) == (actor, reason), action
        assert entry["created_at"] >= since
    by_actor = users["auditor"].get("/api/audit", params={"actor": "operator"}).json()
    assert {e["actor"] for e in by_actor["items"]} == {"operator"}

"""Every read route over HTTP against a store filled by a real sweep: paging and filters."""

from __future__ import annotations

import pytest

from tests.api.conftest import OFF_MAC, OFF_UUID, OFF_VM, PCI_VM, RUN_VM


def test_health_is_open_and_says_ok(client):
    r = client.get("/api/health")
    assert r.status_code == 200
    assert r.json()["status"] == "ok" and r.json()["store"] == "ok"


def test_openapi_is_served_to_users_and_declares_bearer_auth(client, users):
    assert client.get("/api/openapi.json").status_code == 401
    assert client.get("/api/docs").status_code == 401
    assert "swagger" in users["auditor"].get("/api/docs").text.lower()
    r = users["auditor"].get("/api/openapi.json")
    assert r.status_code == 200
    spec = r.json()
    assert "/api/vms/{vm}/release" in spec["paths"]
    assert any(s.get("scheme") == "bearer" for s in spec["components"]["securitySchemes"].values())


def test_vms_page_through_everything_once(users):
    a = users["auditor"]
    first = a.get("/api/vms", params={"limit": 10}).json()
    assert first["total"] == 27 and len(first["items"]) == 10 and first["offset"] == 0
    seen = []
    for offset in range(0, first["total"], 10):
        page = a.get("/api/vms", params={"limit": 10, "offset": offset}).json()
        seen += [vm["id"] for vm in page["items"]]
    assert len(seen) == len(set(seen)) == 27
    beyond = a.get("/api/vms", params={"offset": 1000}).json()
    assert beyond["items"] == [] and beyond["total"] == 27


@pytest.mark.parametrize(
    ("params", "expect"),
    [
        ({"host": "hv-a"}, {OFF_VM, RUN_VM, PCI_VM}),
        ({"host": "hv-a", "state": "shutoff"}, {OFF_VM}),
        ({"owner": "carol", "host": "hv-a"}, {PCI_VM}),
        ({"classification": "pci", "host": "hv-a"}, {PCI_VM}),
        ({"q": "TST-"}, {OFF_VM, RUN_VM, PCI_VM}),  # case-insensitive, contains
        ({"q": OFF_UUID[-13:]}, {OFF_VM}),
        ({"q": "%"}, set()),  # LIKE wildcards are literal
        ({"state": "gone"}, set()),
    ],
)
def test_vm_filters(users, params, expect):
    r = users["auditor"].get("/api/vms", params=params | {"limit": 500})
    assert r.status_code == 200, r.text
    assert {vm["name"] for vm in r.json()["items"]} == expect
    assert r.json()["total"] == len(expect)


def test_vm_summary_fields(users):
    (vm,) = users["auditor"].get("/api/vms", params={"q": OFF_VM}).json()["items"]
    assert vm["id"] == OFF_UUID and vm["state"] == "shutoff" and vm["host"] == "hv-a"
    assert vm["macs"] == [OFF_MAC] and vm["networks"] == ["prod"]
    assert vm["owner"] == "alice" and vm["registered"] is True


def test_vm_detail_by_name_and_by_uuid(users):
    by_name = users["auditor"].get(f"/api/vms/{RUN_VM}").json()
    by_id = users["auditor"].get(f"/api/vms/{by_name['id']}").json()
    assert by_name == by_id
    assert [f["rule"] for f in by_name["findings"]] == ["unregistered-vm"]
    assert by_name["history"] and by_name["history"][0]["field"] in ("host", "state", "name")
    assert by_name["nics"][0]["network"] == "prod"
    assert by_name["guest"] is None  # not inspected: unknown, not empty
    assert by_name["quarantine"] is None and by_name["actions"] == []


def test_unknown_vm_is_404_problem(users):
    r = users["auditor"].get("/api/vms/no-such-vm")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["status"] == 404 and "no-such-vm" in r.json()["detail"]


def test_vm_history_route(users):
    r = users["auditor"].get(f"/api/vms/{OFF_VM}/history")
    assert r.status_code == 200
    fields = {h["field"] for h in r.json()}
    assert {"host", "state", "mac", "network"} <= fields


def test_history_across_vms_finds_who_had_a_mac(users):
    r = users["auditor"].get("/api/history", params={"field": "mac", "value": OFF_MAC.upper()})
    assert r.status_code == 200
    assert {h["vm_id"] for h in r.json()["items"]} == {OFF_UUID}
    per_vm = users["auditor"].get("/api/history", params={"vm": OFF_VM, "limit": 2}).json()
    assert len(per_vm["items"]) == 2 and per_vm["total"] >= 4


def test_findings_filters(users):
    a = users["auditor"]
    everything = a.get("/api/findings", params={"limit": 500}).json()
    assert everything["total"] == len(everything["items"]) > 0
    high = a.get("/api/findings", params={"severity": "high", "limit": 500}).json()["items"]
    assert high and all(f["severity"] in ("high", "critical") for f in high)
    medium_up = a.get("/api/findings", params={"severity": "medium", "limit": 500}).json()
    assert medium_up["total"] >= len(high)
    zone = a.get("/api/findings", params={"rule": "outside-zone", "host": "hv-a"}).json()
    assert [f["name"] for f in zone["items"]] == [PCI_VM]
    assert a.get("/api/findings", params={"status": "resolved"}).json()["total"] == 0
    one = zone["items"][0]
    assert a.get(f"/api/findings/{one['id']}").json() == one
    assert a.get("/api/findings/999999").status_code == 404


def test_images_route(users):
    r = users["auditor"].get("/api/images", params={"limit": 5})
    assert r.status_code == 200
    body = r.json()
    assert body["total"] >= 1 and len(body["items"]) <= 5
    assert users["auditor"].get("/api/images", params={"q": "off.qcow2"}).json()["total"] == 1


def test_templates_scans_actions_audit_exceptions_me(users):
    a = users["auditor"]
    assert a.get("/api/templates").json() == []
    scans = a.get("/api/scans").json()
    assert len(scans) == 1 and scans[0]["counts"]["vms"] == 27
    assert a.get("/api/actions").json()["total"] == 0
    audit = a.get("/api/audit").json()
    assert {e["action"] for e in audit["items"]} == {"user-add"}
    assert a.get("/api/exceptions").json()["total"] == 0
    assert a.get("/api/scans/jobs").json() == []
    assert a.get("/api/me").json()["role"] == "auditor"
    assert a.get("/api/actions/424242").status_code == 404


@pytest.mark.parametrize(
    "url",
    [
        "/api/vms?limit=0",
        "/api/vms?limit=501",
        "/api/vms?offset=-1",
        "/api/vms?state=sleeping",
        "/api/findings?severity=urgent",
        "/api/vms?q=" + "x" * 300,
        "/api/vms?q=a%00b",
        "/api/audit?since=2025-01-01T00:00:00",  # no time zone
        "/api/findings/0",
    ],
)
def test_bad_input_is_422_problem(users, url):
    r = users["auditor"].get(url)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["errors"]

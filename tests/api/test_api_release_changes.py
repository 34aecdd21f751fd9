"""#10.4 over HTTP: release never silently overwrites a NIC someone changed during quarantine.

The admin's change goes through the very connection the API acts through (the libvirt test
driver keeps changes per connection), as ``virsh update-device --config`` would on a host.
"""

from __future__ import annotations

from fastapi.testclient import TestClient
from lxml import etree

from tests.api.conftest import OFF_MAC, OFF_UUID, OFF_VM


def _nic(client: TestClient, uri: str) -> dict[str, str]:
    with client.app.state.vmwarden.connections.connection(uri) as conn:
        (snap,) = [s for s in conn.nic_snapshot(OFF_UUID) if s.mac == OFF_MAC]
    el = etree.fromstring(snap.config_xml.encode())
    link = el.find("link")
    return {
        "network": el.find("source").get("network"),
        "link": "up" if link is None else link.get("state"),
    }


def _admin_moves_to(client: TestClient, uri: str, network: str) -> None:
    with client.app.state.vmwarden.connections.connection(uri) as conn:
        (snap,) = [s for s in conn.nic_snapshot(OFF_UUID) if s.mac == OFF_MAC]
        el = etree.fromstring(snap.config_xml.encode())
        el.find("source").set("network", network)
        conn.set_interface(
            OFF_UUID, etree.tostring(el, encoding="unicode"), live=False, config=True
        )


def test_release_over_http_refuses_then_keeps_an_admin_fix(client, users, estate):
    uri = f"test://{estate.hosts['hv-a']}"
    op = users["operator"]
    assert op.post(f"/api/vms/{OFF_VM}/quarantine", json={"reason": "IR-5"}).status_code == 200
    _admin_moves_to(client, uri, "dmz")

    refused = op.post(f"/api/vms/{OFF_VM}/release", json={"reason": "moved"})
    assert refused.status_code == 409, refused.text
    detail = refused.json()["detail"]
    assert "changed during quarantine" in detail and "is now network 'dmz'" in detail
    assert _nic(client, uri) == {"network": "dmz", "link": "down"}  # untouched
    assert users["auditor"].get(f"/api/vms/{OFF_VM}").json()["quarantine"] is not None

    bad = op.post(f"/api/vms/{OFF_VM}/release", json={"reason": "x", "on_changes": "maybe"})
    assert bad.status_code == 422

    kept = op.post(f"/api/vms/{OFF_VM}/release", json={"reason": "moved", "on_changes": "keep"})
    assert kept.status_code == 200, kept.text
    rec = kept.json()
    assert rec["status"] == "done" and rec["changes"]["resolution"] == "keep-changes"
    assert _nic(client, uri) == {"network": "dmz", "link": "up"}


def test_release_over_http_with_force_puts_the_original_back(client, users, estate):
    uri = f"test://{estate.hosts['hv-a']}"
    op = users["operator"]
    before = _nic(client, uri)
    op.post(f"/api/vms/{OFF_VM}/quarantine", json={"reason": "IR-6"})
    _admin_moves_to(client, uri, "dmz")
    forced = op.post(f"/api/vms/{OFF_VM}/release", json={"reason": "r", "on_changes": "force"})
    assert forced.status_code == 200, forced.text
    assert forced.json()["changes"]["resolution"] == "force"
    assert _nic(client, uri) == before

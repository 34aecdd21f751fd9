"""In Chromium: an operator releases a real quarantined VM; an auditor cannot; CSRF holds.

The VM is a real libvirtd domain; what release did is checked through a libvirt connection
of the test's own, not through vmwarden.
"""

from __future__ import annotations

import re

import libvirt
import pytest
from lxml import etree

from tests.web.conftest import URI, RealVM, Served, login, shot

pytestmark = [pytest.mark.libvirtd, pytest.mark.slow]


def nic_of(name: str, mac: str) -> dict[str, str]:
    """What libvirt (a fresh connection) says of the NIC's persistent definition."""
    conn = libvirt.open(URI)
    try:
        xml = conn.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    finally:
        conn.close()
    for iface in etree.fromstring(xml.encode()).iterfind("devices/interface"):
        if iface.find("mac").get("address") == mac:
            link = iface.find("link")
            return {
                "network": iface.find("source").get("network"),
                "link": "up" if link is None else link.get("state"),
            }
    raise AssertionError(f"{name} has no NIC {mac}")


def csrf_of(page) -> str:
    return page.locator("input[name=csrf_token]").first.get_attribute("value")


def test_operator_releases_a_quarantined_vm(page, served: Served, quarantined_vm: RealVM):
    vm = quarantined_vm
    assert nic_of(vm.name, vm.mac) == {"network": "quarantine", "link": "down"}

    login(page, served, "operator")
    assert served.tokens["operator"] not in page.url
    page.get_by_role("heading", name="Estate overview").wait_for()
    shot(page, "overview")

    # Find it: the overview's quarantine count leads to the queue, the queue to the VM.
    page.click("a.kpi[href='/quarantine']")
    row = page.locator("table.queue tr", has_text=vm.name)
    row.wait_for()
    shot(page, "quarantine-queue")
    row.get_by_role("link", name=vm.name).click()
    page.get_by_role("heading", name=re.compile(vm.name)).wait_for()
    assert page.locator(".badge.q").first.inner_text() == "quarantined"
    shot(page, "vm-detail")

    # A release without a reason is not sent (required field); with one, it is.
    page.once("dialog", lambda d: d.accept())
    page.fill("#reason-detail", "rebuilt from debian12-base, ticket IR-7")
    page.click("form.release button[type=submit]")
    page.locator(".flash-ok").wait_for()
    assert f"Released {vm.name}" in page.locator(".flash-ok").inner_text()
    assert page.locator(".badge.q").count() == 0

    assert nic_of(vm.name, vm.mac) == {"network": "prod", "link": "up"}

    page.goto(served.base + "/audit?action=release")
    entry = page.locator("table.audit tbody tr", has_text=vm.name).first
    assert served.names["operator"] in entry.inner_text()
    assert "rebuilt from debian12-base, ticket IR-7" in entry.inner_text()
    page.goto(served.base + "/audit")
    shot(page, "audit-log")


def test_auditor_sees_no_release_button_and_is_refused(
    page, served: Served, quarantined_vm: RealVM
):
    vm = quarantined_vm
    login(page, served, "auditor")
    page.goto(served.base + "/quarantine")
    row = page.locator("table.queue tr", has_text=vm.name)
    row.wait_for()
    assert page.locator("form.release").count() == 0
    assert page.get_by_role("button", name="Release").count() == 0
    page.goto(f"{served.base}/vms/{vm.id}")
    assert page.locator("form.release").count() == 0
    shot(page, "vm-detail-auditor")

    # A forged form post with the auditor's own valid session and CSRF token: refused.
    refused = page.request.post(
        f"{served.base}/quarantine/{vm.id}/release",
        form={"reason": "sneaky", "csrf_token": csrf_of(page)},
        max_redirects=0,
    )
    assert refused.status == 403
    # And the API refuses the auditor's token.
    api = page.request.post(
        f"{served.base}/api/vms/{vm.id}/release",
        data={"reason": "sneaky"},
        headers={"Authorization": f"Bearer {served.tokens['auditor']}"},
    )
    assert api.status == 403
    assert nic_of(vm.name, vm.mac) == {"network": "quarantine", "link": "down"}


def test_post_without_csrf_token_is_refused(page, served: Served, quarantined_vm: RealVM):
    vm = quarantined_vm
    login(page, served, "operator")
    page.goto(served.base + "/quarantine")
    for form in ({"reason": "no token"}, {"reason": "wrong token", "csrf_token": "x" * 43}):
        resp = page.request.post(
            f"{served.base}/quarantine/{vm.id}/release", form=form, max_redirects=0
        )
        assert resp.status == 403, form
    assert nic_of(vm.name, vm.mac) == {"network": "quarantine", "link": "down"}
    # Nothing was journaled for those attempts.
    page.goto(f"{served.base}/audit?action=release&vm={vm.id}")
    assert page.locator("table.audit tbody tr", has_text=vm.name).count() == 0

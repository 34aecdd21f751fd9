"""In Chromium, a working day: quarantine and release from a VM's page, acknowledge a finding,
an exception requested by an operator and approved by an admin (and an admin's own request,
which only a second admin can decide), the template catalog, and what an auditor sees.

The VMs are libvirt test-driver domains of the demo estate; the test driver keeps its state
in the connection the server acts through, so what quarantine did is read through that
connection (raw libvirt, the persistent XML), not through vmwarden's store.
"""

from __future__ import annotations

import re
from datetime import date, timedelta

import libvirt
import pytest
from lxml import etree

from tests.web.conftest import Served, login, shot

pytestmark = [pytest.mark.slow]
VM = "east-build-04"  # shut off, registered, no findings: a clean VM to quarantine


def nics(served: Served, vm_name: str) -> list[dict[str, str]]:
    """The persistent definition's NICs, as libvirt (the server's connection) has them."""
    state = served.app.state.vmwarden
    record = state.store.get_vm(vm_name)
    with state.connections.connection(record["uri"]) as conn:
        xml = conn.conn.lookupByUUIDString(record["id"]).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    out = []
    for iface in etree.fromstring(xml.encode()).iterfind("devices/interface"):
        link = iface.find("link")
        out.append(
            {
                "network": iface.find("source").get("network"),
                "link": "up" if link is None else link.get("state"),
            }
        )
    return out


def flash_ok(page) -> str:
    page.locator(".flash-ok").wait_for()
    return page.locator(".flash-ok").inner_text()


def test_an_operators_day_and_an_admins_decision(page, served: Served):
    before = nics(served, VM)
    assert before and all(n["network"] != "quarantine" for n in before)

    # -- quarantine from the VM's page, then release it --------------------------------
    login(page, served, "operator")
    page.goto(served.base + "/vms")
    page.fill("input[name=q]", VM)
    page.click("form.filters button[type=submit]")
    page.get_by_role("link", name=VM, exact=True).click()
    page.get_by_role("heading", name=re.compile(VM)).wait_for()
    shot(page, "day-01-vm-detail-operator")

    page.fill("#reason-quarantine", "beaconing to 203.0.113.9 seen by the IDS, IR-88")
    page.once("dialog", lambda d: d.accept())
    page.click("form.quarantine button[type=submit]")
    assert f"Quarantined {VM}" in flash_ok(page)
    assert page.locator("h1 .badge.q").inner_text() == "quarantined"
    assert "IR-88" in page.locator("section.callout").inner_text()
    assert nics(served, VM) == [{"network": "quarantine", "link": "down"}] * len(before)
    shot(page, "day-02-vm-quarantined")

    page.fill("#reason-detail", "false positive: IDS signature updated, IR-88 closed")
    page.once("dialog", lambda d: d.accept())
    page.click("form.release button[type=submit]")
    assert f"Released {VM}" in flash_ok(page)
    assert page.locator("h1 .badge.q").count() == 0
    assert nics(served, VM) == before
    page.locator("form.quarantine").wait_for()  # the button is back
    shot(page, "day-03-vm-released")

    # -- acknowledge a finding --------------------------------------------------------
    page.goto(served.base + "/findings?ack=no")
    row = page.locator("table.findings tbody tr").first
    row.locator("details.act summary").click()
    row.locator("input[name=reason]").fill("owner is rebuilding it this sprint, CHG-204")
    row.locator("input[name=until]").fill((date.today() + timedelta(days=14)).isoformat())
    shot(page, "day-04-acknowledge-form")
    row.get_by_role("button", name="Acknowledge").click()
    assert "acknowledged until" in flash_ok(page)
    page.goto(served.base + "/findings?ack=yes")
    acked = page.locator("table.findings tbody tr", has_text="CHG-204")
    assert "olga" in acked.inner_text()
    shot(page, "day-05-findings-acknowledged")

    # -- request an exception from a finding of a dormant VM -------------------------------
    page.goto(served.base + "/vms")
    page.fill("input[name=q]", "east-legacy-01")
    page.click("form.filters button[type=submit]")
    page.get_by_role("link", name="east-legacy-01", exact=True).click()
    page.locator("table.findings tr", has_text="dormant").get_by_role(
        "link", name="request…"
    ).click()
    assert page.locator("#ex-rule").input_value() == "dormant"
    page.fill("#ex-until", (date.today() + timedelta(days=60)).isoformat())
    page.fill("#ex-reason", "kept off for the Q1 audit restore test; owner dave")
    page.click("#request button[type=submit]")
    assert "takes effect once another admin approves" in flash_ok(page)
    shot(page, "day-06-exception-requested")

    # -- an admin approves it; the admin's own request waits for a second admin -----------
    login(page, served, "admin")
    page.goto(served.base + "/exceptions?status=requested")
    row = page.locator("table.exceptions tbody tr", has_text="Q1 audit restore")
    row.locator("input[name=reason]").fill("risk accepted: no network while off")
    shot(page, "day-07-exception-to-decide")
    row.get_by_role("button", name="Approve").click()
    assert "approved" in flash_ok(page)

    page.goto(served.base + "/exceptions#request")
    page.select_option("#ex-rule", "dormant")
    page.fill("#ex-vm", "west-archive-01")
    page.fill("#ex-until", (date.today() + timedelta(days=90)).isoformat())
    page.fill("#ex-reason", "legal hold on the 2023 ledger, LEG-7")
    page.click("#request button[type=submit]")
    flash_ok(page)
    own = page.locator("table.exceptions tbody tr", has_text="LEG-7")
    assert "your request: another admin decides" in own.inner_text()
    assert own.get_by_role("button", name="Approve").count() == 0
    shot(page, "day-08-exceptions-own-request")

    login(page, served, "admin2")
    page.goto(served.base + "/exceptions?status=requested")
    page.locator("table.exceptions tbody tr", has_text="LEG-7").get_by_role(
        "button", name="Approve"
    ).click()
    flash_ok(page)
    page.goto(served.base + "/exceptions")
    approved = page.locator("table.exceptions tbody tr", has_text="Q1 audit restore").inner_text()
    assert "olga" in approved and "ada" in approved and "approved" in approved
    assert "bea" in page.locator("table.exceptions tbody tr", has_text="LEG-7").inner_text()
    shot(page, "day-09-exceptions-decided")

    page.goto(served.base + "/templates")
    page.locator("#tpl-path").wait_for()
    shot(page, "day-10-templates-admin")

    # -- the auditor sees it all, and no form but sign-out ------------------------------
    login(page, served, "auditor")
    for path in (
        "/exceptions",
        "/findings",
        f"/vms/{served.app.state.vmwarden.store.get_vm(VM)['id']}",
        "/templates",
    ):
        page.goto(served.base + path)
        assert page.locator("form[method=post]").count() == 1  # sign out
    page.goto(served.base + "/exceptions")
    shot(page, "day-11-exceptions-auditor")
    page.goto(served.base + "/audit")
    log = page.locator("table.audit").inner_text()
    for words in (
        "IR-88",
        "IR-88 closed",
        "CHG-204",
        "Q1 audit restore",
        "risk accepted",
        "LEG-7",
        "exception-approve",
        "finding-acknowledge",
    ):
        assert words in log, words
    shot(page, "day-12-audit-log")

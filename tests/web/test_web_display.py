"""What the dashboard and the API show about the demo estate (issue #10.10), over real HTTP.

The estate is the demo's, swept with enforcement into a real SQLite store and served by
uvicorn (``served``): the rogue VMs carry telnetd, three are quarantined by that sweep, the
approved template is the policy's ``debian12-base``. Each test reads a page or an API answer
as a user does and checks what the issue said was wrong.
"""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime

import httpx
import pytest

from tests.web.conftest import Served
from vmwarden.engine.admission_records import vm_from_record
from vmwarden.model import (
    VM,
    Disk,
    Finding,
    Layer,
    Nic,
    NicOrigin,
    Severity,
    State,
    VmMeta,
)
from vmwarden.model.vm import NOT_HERE
from vmwarden.store import Store
from vmwarden.store.records import record_of
from vmwarden.web import charts
from vmwarden.web.views import nic_places

ROGUE = "dmz-rogue-web"  # Ubuntu with telnetd, cloned from random-download, quarantined
CLONE = "vmw-h-unlabelled-clone"  # a clone of debian12-base whose metadata names no template


def _csrf(text: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', text).group(1)


@pytest.fixture(scope="module")
def web(served: Served) -> httpx.Client:
    """A signed-in dashboard session (auditor: reading is all these tests do)."""
    client = httpx.Client(base_url=served.base, follow_redirects=True, timeout=30)
    form = client.get("/login")
    resp = client.post(
        "/login", data={"token": served.tokens["auditor"], "csrf_token": _csrf(form.text)}
    )
    assert resp.status_code == 200 and "Sign out" in resp.text
    yield client
    client.close()


@pytest.fixture(scope="module")
def api(served: Served) -> httpx.Client:
    headers = {"Authorization": f"Bearer {served.tokens['auditor']}"}
    with httpx.Client(base_url=served.base, headers=headers, timeout=30) as client:
        yield client


def _text(page: str) -> str:
    """The page as a person reads it: tags dropped, entities decoded, spaces collapsed."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))


def _row(page: str, marker: str) -> str:
    """The outermost table row (``<tr>…</tr>``, tables nested in it included) with ``marker``."""
    depth, start = 0, 0
    for tag in re.finditer(r"<tr[\s>]|</tr>", page):
        if tag.group().startswith("<tr"):
            depth += 1
            if depth == 1:
                start = tag.start()
        else:
            depth -= 1
            if depth == 0 and marker in page[start : tag.end()]:
                return page[start : tag.end()]
    raise AssertionError(f"no row with {marker!r}")


def _section(text: str, start: str, end: str) -> str:
    i = text.index(start)
    return text[i : text.index(end, i)]


# -- guest facts -------------------------------------------------------------------------------


def test_vm_page_and_api_show_the_stored_guest_facts(web, api):
    page = web.get(f"/vms/{ROGUE}")
    assert page.status_code == 200
    guest = _section(_text(page.text), "Guest (read offline)", "Network interfaces")
    assert "Not inspected" not in guest
    assert "Ubuntu 20.04.1 LTS" in guest and "telnetd" in guest
    assert "root, ubuntu" in guest  # accounts with a password

    detail = api.get(f"/api/vms/{ROGUE}").json()
    assert detail["guest"] is not None
    assert detail["guest"]["os_pretty"] == "Ubuntu 20.04.1 LTS"
    assert "telnetd" in {p["name"] for p in detail["guest"]["packages"]}
    assert any(f["rule"] == "forbidden-software" for f in detail["findings"])


def test_report_vms_json_carries_the_guest_facts_the_api_shows(served: Served, api):
    """``vmwarden report vms --format json`` gives each VM the stored guest facts the API
    gives it (``store.guest.guest_of``; the record of a swept VM has none)."""
    ran = subprocess.run(
        [sys.executable, "-m", "vmwarden.cli.main", "report", "vms", "--format", "json",
         "--db", served.db_url],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    by_name = {vm["name"]: vm for vm in json.loads(ran.stdout)}
    rogue = by_name[ROGUE]["guest"]
    assert rogue is not None and "telnetd" in {p["name"] for p in rogue["packages"]}
    assert rogue == api.get(f"/api/vms/{ROGUE}").json()["guest"]
    assert by_name["east-pxe-boot"]["guest"] is None  # no disk: nothing was read


def test_a_vm_whose_disks_were_never_read_still_says_not_inspected(web, api):
    # east-pxe-boot boots from the network: no disk, so no facts (its finding says unknown)
    assert api.get("/api/vms/east-pxe-boot").json()["guest"] is None
    assert "Not inspected" in web.get("/vms/east-pxe-boot").text


def test_facts_read_through_another_chain_are_not_shown(served: Served, api):
    # another host's VM whose disk has the same path but no backing file (its chain is not
    # the one inspected here): the local file's facts are not its facts
    with Store.open(served.db_url) as store:
        rogue = vm_from_record(store.get_vm(ROGUE))
        top = rogue.disks[0].chain[0]
        disk = Disk(target="vda", chain=[Layer(path=top.path, format="qcow2")])
        other = VM(id="0e0e0e0e-3333-4222-8333-444444444444", name="vmw-h-elsewhere",
                   host="hv-far", uri="qemu+ssh://far/system", state=State.SHUTOFF,
                   disks=[disk])  # fmt: skip
        # and a VM of a remote host whose chain names the very same paths: its layers say they
        # were not read from here (engine.lineage), so the local files' facts are not its own
        far = [Layer(path=x.path, format=x.format, error=f"{NOT_HERE} (hv-far is another host)")
               for x in rogue.disks[0].chain]  # fmt: skip
        remote = replace(other, id="0e0e0e0e-4444-4222-8333-444444444444", name="vmw-h-remote",
                         disks=[Disk(target="vda", chain=far)])  # fmt: skip
        store.record_inventory([other, remote], now=datetime.now(UTC), complete_hosts=set())
    assert api.get("/api/vms/vmw-h-elsewhere").json()["guest"] is None
    assert api.get("/api/vms/vmw-h-remote").json()["guest"] is None
    assert api.get(f"/api/vms/{ROGUE}").json()["guest"] is not None


# -- template ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def unlabelled_clone(served: Served) -> str:
    """A VM cloned from debian12-base (same disks as east-app-05) with no template metadata."""
    with Store.open(served.db_url) as store:
        base = vm_from_record(store.get_vm("east-app-05"))
        vm = replace(
            base,
            id="0e0e0e0e-1111-4222-8333-444444444444",
            name=CLONE,
            meta=VmMeta(owner="ops", classification="internal", registered=True),
            nics=[],
        )
        store.record_inventory([vm], now=datetime.now(UTC), complete_hosts=set())
    return CLONE


def test_template_is_named_for_a_clone_of_an_approved_template(web, api, unlabelled_clone):
    text = _text(web.get(f"/vms/{unlabelled_clone}").text)
    template = _section(_section(text, "Facts", "Guest"), "Template", "Registered")
    assert "debian12-base" in template and "—" not in template
    assert "template debian12-base" in _section(text, "Disks", "Findings")  # the disk's root
    clones = api.get(f"/api/vms/{unlabelled_clone}").json()["cloned_from"]
    assert [(c["disk"], c["template"]) for c in clones] == [("vda", "debian12-base")]
    assert api.get(f"/api/vms/{unlabelled_clone}").json()["template"] is None  # metadata's


def test_a_declared_template_the_disk_does_not_come_from_is_flagged(web, api):
    # the rogue VMs say debian12-base in their metadata; their disks come from random-download
    template = _section(_text(web.get(f"/vms/{ROGUE}").text), "Template", "Registered")
    assert "debian12-base" in template and "no disk is a clone of an approved template" in template
    assert api.get(f"/api/vms/{ROGUE}").json()["cloned_from"] == []


# -- images ------------------------------------------------------------------------------------


def test_images_used_by_names_the_vms(web, api):
    page = web.get("/images").text
    vm = api.get("/api/vms/east-app-05").json()
    row = _row(page, "east-app-05-vda.qcow2")
    assert f'href="/vms/{vm["id"]}"' in row
    used_by = re.search(rf'href="/vms/{vm["id"]}"[^>]*>([^<]*)</a>', row).group(1)
    assert used_by == "east-app-05"
    assert f">{vm['id'][:8]}<" not in page


# -- evidence ----------------------------------------------------------------------------------


def test_evidence_is_rows_not_json(web):
    page = web.get(f"/vms/{ROGUE}").text
    row = _row(page, "forbidden-software")
    assert "[&#34;" not in row and '["' not in row  # no JSON list
    assert re.search(r"<dt>packages</dt>\s*<dd[^>]*>netcat-traditional, telnetd</dd>", row)
    unapproved = _row(page, "unapproved-template")
    assert re.search(
        r"<dt>digest</dt>\s*<dd class=\"mono wrap\">sha256:[0-9a-f]{64}</dd>", unapproved
    )


def test_vulnerabilities_and_accounts_are_tables(served: Served, web):
    vulns = [
        {"id": "CVE-2023-0001", "aliases": ["DSA-1"], "package": "openssl",
         "installed": "1.1.1f-1ubuntu2", "fixed": "1.1.1f-1ubuntu2.20", "severity": "high",
         "score": 7.5},
        {"id": "CVE-2023-0002", "aliases": [], "package": "telnetd", "installed": "0.17-41",
         "fixed": None, "severity": "critical", "score": None},
    ]  # fmt: skip
    accounts = [{"name": "ubuntu", "expired": "2021-01-01"}, {"name": "root", "expires": None}]
    with Store.open(served.db_url) as store:
        vm = store.get_vm(ROGUE)
        store.record_findings(
            [
                Finding("vmw-h-vulnerable", "vm", vm["id"], vm["name"], vm["host"],
                        Severity.HIGH, {"vulnerabilities": vulns, "count": 2}),
                Finding("vmw-h-accounts", "vm", vm["id"], vm["name"], vm["host"],
                        Severity.MEDIUM, {"accounts": accounts}),
            ],
            now=datetime.now(UTC),
            scope_rules={"vmw-h-vulnerable", "vmw-h-accounts"},
        )  # fmt: skip
    for path in (f"/vms/{ROGUE}", "/findings"):
        page = web.get(path).text
        row = _row(page, "vmw-h-vulnerable")
        heads = re.findall(r"<th>([^<]*)</th>", row)
        assert heads[:5] == ["id", "aliases", "package", "installed", "fixed"], path
        cells = _text(row)
        assert "CVE-2023-0001 DSA-1 openssl 1.1.1f-1ubuntu2 1.1.1f-1ubuntu2.20 high 7.5" in cells
        assert "CVE-2023-0002 — telnetd 0.17-41 — critical —" in cells
        assert "{" not in cells
        acc = _row(page, "vmw-h-accounts")
        assert re.findall(r"<th>([^<]*)</th>", acc) == ["name", "expired", "expires"]
        assert "ubuntu 2021-01-01 —" in _text(acc) and "root — —" in _text(acc)


def test_evidence_of_hostile_content_is_escaped(served: Served, web):
    evil = "<img src=x onerror=alert(1)>"
    with Store.open(served.db_url) as store:
        vm = store.get_vm(ROGUE)
        store.record_findings(
            [Finding("vmw-h-evil", "vm", vm["id"], vm["name"], vm["host"], Severity.LOW,
                     {evil: [{evil: evil}], "packages": [evil]})],
            now=datetime.now(UTC),
            scope_rules={"vmw-h-evil"},
        )  # fmt: skip
    page = web.get(f"/vms/{ROGUE}").text
    assert evil not in page and "&lt;img src=x onerror=alert(1)&gt;" in page


# -- the VMs list during quarantine ------------------------------------------------------------


def test_vms_list_shows_the_quarantine_network_and_where_the_nic_belongs(web, api):
    # the sweep recorded dmz-rogue-web on dmz, then quarantined it: the record is stale
    row = _text(_row(web.get("/vms").text, f">{ROGUE}</a>"))
    assert "quarantine (belongs on dmz)" in row
    nics = _section(_text(web.get(f"/vms/{ROGUE}").text), "Network interfaces", "Disks")
    assert "quarantine" in nics and "belongs on dmz" in nics
    # a VM not held reads as before
    assert "belongs" not in _text(_row(web.get("/vms").text, ">east-app-05</a>"))


# -- audit log ---------------------------------------------------------------------------------


def test_audit_log_can_leave_notify_out(web, api):
    everything = api.get("/api/audit", params={"limit": 500}).json()
    notify = [a for a in everything["items"] if a["action"] == "notify"]
    assert notify, "the demo sweep alerts: the test needs notify rows"
    quiet = api.get("/api/audit", params={"limit": 500, "exclude_action": "notify"}).json()
    assert quiet["total"] == everything["total"] - len(notify)
    assert {a["action"] for a in quiet["items"]} == {a["action"] for a in everything["items"]} - {
        "notify"
    }

    page = web.get("/audit", params={"exclude": "notify"}).text
    cells = [_text(c).strip() for c in re.findall(r"<td>([^<]*)</td>", page)]
    assert "notify" not in cells and "quarantine" in cells
    assert f"{quiet['total']} entries" in _text(page)
    assert re.search(r'name="exclude" value="notify" checked', page)
    assert "notify" in [
        _text(c).strip() for c in re.findall(r"<td>([^<]*)</td>", web.get("/audit").text)
    ]


def test_audit_exclusions_are_bounded(api):
    many = [("exclude_action", f"a{i}") for i in range(33)]
    assert api.get("/api/audit", params=many).status_code == 422


# -- charts ------------------------------------------------------------------------------------


def _axis_labels(svg: str) -> dict[str, float]:
    """The y axis: label → its height (the text's baseline sits 4 below the grid line)."""
    found = re.findall(r'<text class="axis" x="34" y="([0-9.]+)"[^>]*>([^<]*)</text>', svg)
    assert len({label for _, label in found}) == len(found), found  # never "1, 0, 0"
    return {label: float(y) - 4 for y, label in found}


@pytest.mark.parametrize(("top", "ticks"), [(1, ["0", "1"]), (2, ["0", "1", "2"]),
                                             (5, ["0", "1", "2", "3", "4", "5"]),
                                             (40, ["0", "25", "50"])])  # fmt: skip
def test_y_axis_ticks_are_distinct_whole_numbers_at_their_height(top, ticks):
    svg = str(charts.lines("t", ["a", "b"], [charts.Series("s", "series-a", [0, top])]))
    labels = _axis_labels(svg)
    assert sorted(labels, key=int) == ticks
    axis_top = int(ticks[-1])
    zero, full = labels["0"], labels[ticks[-1]]
    for label, y in labels.items():  # each label where its value is on the plot
        assert y == pytest.approx(zero + (full - zero) * int(label) / axis_top, abs=0.11)


def test_a_nic_recorded_while_held_shows_where_it_belongs():
    # a sweep after the quarantine records the NIC on the quarantine network, and (owner E)
    # where it was before in Nic.quarantined_from: the list shows both
    held = Nic(
        mac="52:54:00:00:00:0a",
        type="network",
        network="quarantine",
        link="down",
        quarantined_from=NicOrigin(type="network", network="pci", vlan=[101]),
    )
    free = Nic(mac="52:54:00:00:00:0b", type="bridge", bridge="br-mgmt")
    vm = VM(id="0e0e0e0e-2222-4222-8333-444444444444", name="vmw-h-held", host="h",
            uri="test:///x.xml", state=State.SHUTOFF, nics=[held, free])  # fmt: skip
    places = nic_places(record_of(vm), None)
    assert [(p["now"], p["belongs"], p["held"]) for p in places] == [
        ("quarantine", "pci", True),
        ("br-mgmt", None, False),
    ]

"""In Chromium at 1440 px: the audit log fits the window and chart labels do not overlap.

Both are layout, which only a browser measures: hostile journal entries (a long VM name, an
unbroken URL in an error, a long path in an event) once made the audit table wider than the
window; 30 sweeps once put the last two x labels of the trend charts on top of each other.
"""

from __future__ import annotations

from collections import defaultdict

import pytest

from tests.web.conftest import Served, login, shot
from vmwarden.store import Store

pytestmark = [pytest.mark.slow]
WIDTH = 1440


@pytest.fixture(scope="module")
def hostile_journal(served: Served) -> None:
    """Entries with unbroken strings where the audit table shows them."""
    with Store.open(served.db_url) as store:
        vm = store.get_vm("dmz-rogue-web")
        url = "https://hooks.example.com/services/" + "T0" * 60
        entry = store.journal_begin(
            "notify",
            vm_id=vm["id"],
            vm_name="vmw-h-" + "a" * 120,
            host=vm["host"],
            uri=vm["uri"],
            actor="ci",
            reason="policy: " + "forbidden-software," * 10,
            rule="forbidden-software",
            changes={"receiver": url},
        )
        store.journal_update(entry, status="failed", error=f"POST {url} refused")
        store.audit(
            "template-approve",
            "ada",
            {"path": "/var/lib/libvirt/images/" + "very-long-name-" * 12 + ".qcow2",
             "digest": "sha256:" + "ab" * 32},
        )  # fmt: skip


@pytest.fixture(scope="module")
def thirty_scans(served: Served) -> None:
    """Thirty finished sweeps: the trend charts get one x position each."""
    with Store.open(served.db_url) as store:
        for _ in range(30):
            store.finish_scan(store.begin_scan(["test:///vmw-h.xml"]), {"vms": 1})


def test_audit_log_fits_a_1440px_window(page, served: Served, hostile_journal: None):
    login(page, served, "auditor")
    for url in ("/audit", "/audit?exclude=notify"):
        page.goto(served.base + url)
        page.locator("table.audit").wait_for()
        page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= WIDTH, f"{url}: the page is {width} px wide in a {WIDTH} px window"
    shot(page, "audit-1440")


def _overlaps(boxes: list[dict[str, float]]) -> list[tuple[int, int]]:
    out = []
    for i, a in enumerate(boxes):
        for j, b in enumerate(boxes[i + 1 :], i + 1):
            across = a["x"] < b["x"] + b["width"] and b["x"] < a["x"] + a["width"]
            down = a["y"] < b["y"] + b["height"] and b["y"] < a["y"] + a["height"]
            if across and down:
                out.append((i, j))
    return out


def test_chart_labels_do_not_overlap(page, served: Served, thirty_scans: None):
    login(page, served, "auditor")
    page.goto(served.base + "/")
    charts = page.locator("figure.chart svg")
    assert charts.count() >= 2
    for n in range(charts.count()):
        svg = charts.nth(n)
        labels = svg.locator("text.axis")
        rows: dict[str, list[dict[str, float]]] = defaultdict(list)
        texts: dict[str, list[str]] = defaultdict(list)
        for i in range(labels.count()):
            label = labels.nth(i)
            # x labels share a baseline (y); y labels share an x: group each axis on its own
            key = (
                "y-axis"
                if label.get_attribute("text-anchor") == "end" and label.get_attribute("x") == "34"
                else "x-axis"
            )
            rows[key].append(label.bounding_box())
            texts[key].append(label.text_content() or "")
        name = svg.get_attribute("aria-label")
        assert len(rows["x-axis"]) >= 2, name  # the first and the last scan at least
        for axis, boxes in rows.items():
            assert not _overlaps(boxes), f"{name}: {axis} labels overlap: {texts[axis]}"
        assert len(set(texts["y-axis"])) == len(texts["y-axis"]), f"{name}: {texts['y-axis']}"
    shot(page, "overview-30-scans")

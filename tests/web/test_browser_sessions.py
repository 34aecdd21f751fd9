"""In Chromium: an admin finds an operator's session on the Sessions page (linked from the
nav), ends it with a reason, and the operator's browser is signed out at its next click."""

from __future__ import annotations

import pytest

from tests.web.conftest import Served, login, shot

pytestmark = [pytest.mark.slow]


def test_an_admin_ends_an_operators_session(browser, page, served: Served):
    other = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        olga = other.new_page()
        login(olga, served, "operator")
        olga.get_by_role("heading", name="Estate overview").wait_for()
        olga.click("nav a[href='/sessions']")  # every role reads it (#10.11); ends: admins
        olga.get_by_role("heading", name="Sign-in sessions").wait_for()
        assert olga.locator("table.sessions button", has_text="End").count() == 0

        login(page, served, "admin")
        page.click("nav a[href='/sessions']")
        page.get_by_role("heading", name="Sign-in sessions").wait_for()
        name = served.names["operator"]
        row = page.locator("table.sessions tbody tr", has_text=name).first
        assert "127.0.0.1" in row.inner_text()
        shot(page, "sessions")
        row.locator("input[name=reason]").fill("IR-40: shared screen, session ended")
        row.get_by_role("button", name="End").click()
        page.locator(".flash-ok").wait_for()
        assert f"of {name}" in page.locator(".flash-ok").inner_text()
        assert page.locator("table.sessions tbody tr", has_text=name).count() == 0

        olga.click("nav a[href='/vms']")
        olga.wait_for_url(served.base + "/login")

        page.goto(served.base + "/audit?action=session-end")
        entry = page.locator("table.audit tbody tr", has_text="IR-40").first
        assert served.names["admin"] in entry.inner_text() and name in entry.inner_text()
    finally:
        other.close()

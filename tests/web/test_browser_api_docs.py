"""#11.10 in Chromium: the API docs page renders the operations of vmwarden's OpenAPI
document while every request the browser makes goes to vmwarden's own origin (before, the
page pulled swagger-ui from a CDN), and nothing breaks the page's Content-Security-Policy."""

from __future__ import annotations

import pytest

from tests.web.conftest import Served, login, shot

pytestmark = [pytest.mark.slow]


def test_the_docs_page_loads_from_this_origin_only(page, served: Served):
    requests: list[str] = []
    problems: list[str] = []
    page.on("request", lambda req: requests.append(req.url))
    page.on("console", lambda msg: msg.type == "error" and problems.append(msg.text))
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    login(page, served, "auditor")
    form_csrf = page.locator("input[name=csrf_token]").first.get_attribute("value")
    requests.clear()
    page.goto(served.base + "/api/docs")
    page.locator(".opblock").first.wait_for(timeout=30_000)
    assert page.locator(".opblock").count() > 20  # the operations of /api/openapi.json
    assert page.locator(".opblock-summary-path", has_text="/api/vms").count() >= 1
    shot(page, "api-docs")
    assert requests and all(url.startswith(served.base + "/") for url in requests), requests
    assert served.base + "/api/openapi.json" in requests
    assert problems == []
    # "Try it out" writes carry the session's CSRF token, the one the dashboard's forms carry
    meta = page.locator('meta[name="csrf-token"]').get_attribute("content")
    assert meta and meta == form_csrf

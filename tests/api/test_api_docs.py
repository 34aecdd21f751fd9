"""#11.10: /api/docs loaded swagger-ui from a CDN (no integrity hash, on vmwarden's origin with
the user's session; unreachable offline). Now every asset comes from the installed package,
under /api/docs/assets, behind sign-in, and the page's CSP allows this origin only."""

from __future__ import annotations

import re

import pytest

from vmwarden.api.routes.docs import vendor_dir


def test_the_page_references_no_other_origin(users):
    r = users["auditor"].get("/api/docs")
    assert r.status_code == 200
    assert "cdn" not in r.text.lower() and "//" not in r.text.replace("<!doctype html>", "")
    refs = re.findall(r'(?:src|href)="([^"]+)"', r.text)
    assert refs and all(ref.startswith("/api/docs/assets/") for ref in refs), refs
    assert "set-cookie" not in r.headers  # a bearer caller is given no session cookie
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    assert "connect-src 'self'" in csp and "http" not in csp


def test_its_assets_are_served_from_the_package(users):
    page = users["auditor"].get("/api/docs").text
    refs = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert len(refs) == 4  # css, icon, bundle, initializer
    for ref in refs:
        r = users["auditor"].get(ref)
        assert r.status_code == 200, ref
        assert r.headers["content-type"].split(";")[0] in (
            "text/css", "text/javascript", "image/png",
        ), ref  # fmt: skip
        assert "max-age" in r.headers["cache-control"]
    bundle = users["auditor"].get("/api/docs/assets/swagger-ui-bundle.js")
    root = vendor_dir()
    assert root is not None
    assert bundle.content == (root / "swagger-ui-bundle.js").read_bytes()
    assert "SwaggerUIBundle" in bundle.text
    init = users["auditor"].get("/api/docs/assets/vmwarden-docs.js").text
    assert "validatorUrl: null" in init and "http" not in init
    assert '"/api/openapi.json"' in init and "X-CSRF-Token" in init


@pytest.mark.parametrize(
    "name",
    ["index.html", "swagger-ui.js.map", "..%2F__init__.py", "%2e%2e%2f%2e%2e%2fLICENSE", "x" * 65],
)
def test_nothing_else_of_the_package_is_served(users, name):
    assert users["auditor"].get(f"/api/docs/assets/{name}").status_code in (404, 422)


def test_the_docs_and_their_assets_need_sign_in(client):
    for url in ("/api/docs", "/api/docs/assets/swagger-ui-bundle.js", "/api/openapi.json"):
        assert client.get(url).status_code == 401, url

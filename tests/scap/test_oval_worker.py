"""The OVAL evaluator in the sandboxed worker on the real Debian qcow2 (dissect, no mount)
gives the same result for every definition as over the mounted root (which
test_oval_openscap pins to OpenSCAP), reading a small part of the image."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from tests.scap.oval_reference import xccdf_defaults
from vmwarden.errors import InspectError
from vmwarden.inspect.sandbox import InspectorPool
from vmwarden.scap.oval import evaluate, load_oval
from vmwarden.scap.oval_localfs import LocalRootFiles
from vmwarden.scap.oval_worker import HANDLERS, KIND, request_payload

from .conftest import DEBIAN11_OVAL, DEBIAN_IMAGE

XCCDF = DEBIAN11_OVAL.with_name("ssg-debian11-xccdf.xml")


def test_worker_results_equal_the_mounted_roots(debian_root: Path) -> None:
    external = xccdf_defaults(XCCDF)
    local = evaluate(load_oval(DEBIAN11_OVAL), LocalRootFiles(debian_root), external_vars=external)
    payload = request_payload(DEBIAN11_OVAL.read_bytes(), external_vars=external)
    with InspectorPool(
        workers=1, fingerprint_key=secrets.token_bytes(32), handlers=HANDLERS, timeout=300
    ) as pool:
        answer = pool.run(DEBIAN_IMAGE, KIND, payload)
    results = answer["results"]
    assert set(results) == set(local)
    differ = {d: (results[d], local[d].result) for d in local if results[d][0] != local[d].result}
    assert differ == {}
    stats = answer["stats"]
    assert 0 < stats["bytes_read"] < stats["image_bytes"] / 10


def test_a_kind_the_pool_was_not_given_is_refused() -> None:
    pool = InspectorPool(workers=1, fingerprint_key=secrets.token_bytes(32))
    with pool, pytest.raises(InspectError, match="unknown kind 'oval'"):
        pool.run(DEBIAN_IMAGE, KIND, request_payload(b"<x/>"))


def test_content_that_is_not_oval_is_an_error_not_a_crash() -> None:
    pool = InspectorPool(workers=1, fingerprint_key=secrets.token_bytes(32), handlers=HANDLERS)
    with pool, pytest.raises(InspectError, match="OVAL content"):
        pool.run(DEBIAN_IMAGE, KIND, request_payload(b"<not-oval/>"))

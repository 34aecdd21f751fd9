"""The streaming sweep inspects disks host by host and finds what the whole-estate sweep
finds: real small qcow2 guests (a golden image, linked clones, a full copy, reinstalled
guests, an orphaned pool volume) on three test-driver hosts, a signed template for content
lineage, rules on guest facts (stale openssl), on estate-wide guest facts (shared SSH host
keys across hosts) and on an inspected orphan."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.distributed.conftest import Estate, build_estate
from vmwarden.engine.content_lineage import FINGERPRINT_KEY
from vmwarden.engine.scan import Sweep, SweepOptions
from vmwarden.inspect.digest import digest_file
from vmwarden.policy import parse_policy
from vmwarden.store import Store


@pytest.fixture(scope="module")
def estate(tmp_path_factory: pytest.TempPathFactory) -> Estate:
    return build_estate(tmp_path_factory.mktemp("vmw-s-inspect"))


def _sweep(estate: Estate, db: Path, *, stream: bool) -> tuple[Any, dict[str, Any]]:
    """One sweep with inspection (the default) into a fresh store: result, what it stored."""
    with Store.open(f"sqlite:///{db}") as store:
        fingerprint = {FINGERPRINT_KEY: estate.signature}  # full clones known by content
        store.approve_template("golden-signed", digest_file(estate.golden), None, fingerprint, "t")
        options = SweepOptions(stream_hosts=1 if stream else 10**9)
        result = Sweep(store, parse_policy(estate.policy), actor="t", options=options).run(
            estate.uris
        )
        records = [r for h in ("host-a", "host-b", "host-c") for r in store.host_records(h)]
        stored = {
            "findings": sorted(
                (f["rule"], f["resource"], f["id"], f["host"], repr(sorted(f["evidence"].items())))
                for f in store.findings("open")
            ),
            "guests": {
                r["name"]: (
                    (r.get("guest") or {}).get("os_name"),
                    len((r.get("guest") or {}).get("packages") or []),
                )
                for r in records
            },
        }
    return result, stored


def test_a_streamed_sweep_with_inspection_finds_what_the_whole_estate_sweep_finds(
    estate: Estate, tmp_path: Path
) -> None:
    whole, w = _sweep(estate, tmp_path / "whole.sqlite", stream=False)
    streamed, s = _sweep(estate, tmp_path / "stream.sqlite", stream=True)
    assert whole.streamed is None and streamed.streamed is not None
    assert streamed.streamed["vms"] == len(whole.vms) == 8
    assert s["findings"] == w["findings"]
    rules = {f[0] for f in s["findings"]}
    assert rules == {"unapproved", "shared-host-key", "stale-openssl", "stale-forgotten"}
    assert not [f for f in s["findings"] if f[0] == "uninspectable"]
    unapproved = {f[2] for f in s["findings"] if f[0] == "unapproved"}
    assert len(unapproved) == 3  # the reinstalled guests; rogue-c is a full clone by content
    # the streamed sweep stored each VM with the guest facts it read
    assert all(os == "debian" and n > 0 for os, n in s["guests"].values()), s["guests"]

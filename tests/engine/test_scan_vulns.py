"""The OSV feed is loaded once per Sweep and again only when its files change (watch keeps one
Sweep for its life and reconciles every few minutes)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from vmwarden.engine.scan import Sweep, SweepOptions
from vmwarden.errors import VmwardenError
from vmwarden.policy import parse_policy

DATA = Path(__file__).resolve().parents[1] / "vulns" / "data"


def test_feed_is_reused_until_a_file_changes(tmp_path: Path) -> None:
    feed = tmp_path / "osv"
    shutil.copytree(DATA, feed)
    sweep = Sweep(None, parse_policy("version: 1\n"), actor="t", options=SweepOptions(vulns=feed))
    first = sweep._vulns()
    assert first is not None and sweep._vulns() is first
    record = next(feed.glob("DSA-*.json"))
    st = record.stat()
    os.utime(record, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert sweep._vulns() is not first


def test_missing_feed_is_the_feeds_own_clear_error(tmp_path: Path) -> None:
    sweep = Sweep(
        None, parse_policy("version: 1\n"), actor="t", options=SweepOptions(vulns=tmp_path / "no")
    )
    with pytest.raises(VmwardenError, match="no"):
        sweep._vulns()

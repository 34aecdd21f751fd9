"""Loading OSV feeds: the shipped records, zips as osv.dev ships them, and hostile input."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import pytest

from tests.vulns.conftest import DATA, guest, record
from vmwarden.errors import VmwardenError
from vmwarden.vulns import VulnDB, VulnFeedError


def test_loads_the_shipped_feed(feed):
    assert len(feed) == 4  # DSA, Debian CVE, ALSA, the fictional record
    assert feed.ignored == 1  # PyPI: valid, not matched against guests
    assert feed.skipped == 0 and feed.warnings == []
    assert feed.ecosystems() == ["almalinux:9", "debian:12", "debian:13"]


def test_loads_a_zip_like_osv_dev(tmp_path):
    archive = tmp_path / "Debian.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        for path in sorted(DATA.glob("*.json")):
            z.write(path, path.name)
        z.writestr("README.md", "not a record")
    db = VulnDB.load(archive)
    assert len(db) == 4 and db.warnings == []
    assert [m.id for m in db.match(guest("openssl=3.0.9-1"))] == [
        "DEBIAN-CVE-2023-5363",
        "DSA-5532-1",
    ]


def test_loads_one_file_and_api_style_lists(tmp_path):
    one = tmp_path / "one.json"
    one.write_text(json.dumps(record("Debian:12", "zlib", {"introduced": "0"})))
    assert len(VulnDB.load(one)) == 1
    api = tmp_path / "query.json"
    vulns = [record("Debian:12", n, {"introduced": "0"}, id=n) for n in ("a", "b")]
    api.write_text(json.dumps({"vulns": vulns}))
    assert len(VulnDB.load(api)) == 2


def test_missing_feed_is_an_error_with_a_hint(tmp_path):
    with pytest.raises(VulnFeedError, match="does not exist") as info:
        VulnDB.load(tmp_path / "nope")
    assert isinstance(info.value, VmwardenError) and "Debian.zip" in info.value.hint


HOSTILE = {
    "bad-json.json": b'{"id": "X", "affected": [',
    "not-utf8.json": b'{"id": "\xff\xfe"}',
    "deep.json": b"[" * 100_000 + b"]" * 100_000,
    "scalar.json": b"42",
    "wrong-types.json": json.dumps({"id": "X", "affected": "openssl"}).encode(),
    "id-number.json": json.dumps({"id": 5, "affected": []}).encode(),
    "event-two-keys.json": json.dumps(
        record("Debian:12", "x", {"introduced": "0", "fixed": "1.0"})
    ).encode(),
    "event-empty.json": json.dumps(record("Debian:12", "x", {})).encode(),
    "bad-version.json": json.dumps(
        record("Debian:12", "x", {"introduced": "0"}, {"fixed": "!!not a version!!"})
    ).encode(),
    "huge-number.json": b'{"id": "X", "n": ' + b"9" * 10_000 + b"}",
}


def test_hostile_records_are_skipped_with_warnings_naming_the_file(tmp_path):
    feed = tmp_path / "feed"
    feed.mkdir()
    for name, blob in HOSTILE.items():
        (feed / name).write_bytes(blob)
    (feed / "huge.json").write_bytes(b" " * 5000 + b"{}")
    (feed / "good.json").write_text(json.dumps(record("Debian:12", "zlib", {"introduced": "0"})))
    os.symlink("/etc/passwd", feed / "link.json")
    (feed / "fifo.json").unlink(missing_ok=True)
    os.mkfifo(feed / "fifo.json")

    db = VulnDB.load(feed, max_file_bytes=4096)
    assert len(db) == 1  # only good.json
    text = "\n".join(db.warnings)
    for name in [*HOSTILE, "huge.json", "link.json", "fifo.json"]:
        assert f"{feed / name}:" in text, name
    assert "over the 4096-byte limit" in text
    assert "a symlink" in text and "not a regular file" in text
    assert "'!!not a version!!'" in text


def test_zip_slip_and_oversized_members_are_skipped(tmp_path):
    archive = tmp_path / "evil.zip"
    good = json.dumps(record("Debian:12", "zlib", {"introduced": "0"}))
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("../../etc/cron.d/evil.json", good)
        z.writestr("/abs/evil.json", good)
        z.writestr("dir\\..\\evil.json", good)
        z.writestr("bomb.json", b"[" + b" " * 10_000_000 + b"]")  # 10 MB of spaces, ~10 kB zipped
        z.writestr("nested/ok.json", good)
    before = set(Path(tmp_path).rglob("*"))
    db = VulnDB.load(archive, max_file_bytes=1 << 20)
    assert len(db) == 1
    text = "\n".join(db.warnings)
    assert "../../etc/cron.d/evil.json: skipped member with a '..' component (zip-slip)" in text
    assert "/abs/evil.json: skipped member with an absolute path" in text
    assert "backslash" in text
    assert "bomb.json: skipped" in text
    assert set(Path(tmp_path).rglob("*")) == before  # nothing was written anywhere


def test_a_zip_whose_header_lies_about_size_is_still_capped(tmp_path):
    archive = tmp_path / "liar.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("big.json", b"[" + b" " * 100_000 + b"]")
    blob = bytearray(archive.read_bytes())
    # Patch the central directory's uncompressed size (offset 24 in the entry) to 10 bytes.
    cd = blob.rfind(b"PK\x01\x02")
    blob[cd + 24 : cd + 28] = (10).to_bytes(4, "little")
    archive.write_bytes(bytes(blob))
    db = VulnDB.load(archive, max_file_bytes=1000)
    assert len(db) == 0 and db.warnings
    assert "big.json: skipped" in db.warnings[0]


def test_not_a_zip_named_zip_is_read_as_json_and_warned(tmp_path):
    fake = tmp_path / "Debian.zip"
    fake.write_bytes(b"PK\x03\x04 garbage")
    db = VulnDB.load(fake)
    assert len(db) == 0 and "not valid JSON" in db.warnings[0]


def test_withdrawn_records_are_ignored():
    db = VulnDB()
    assert not db.add_raw(record("Debian:12", "x", {"introduced": "0"}, withdrawn="2024"), "w")
    assert db.ignored == 1 and db.match(guest("x=1.0-1")) == []

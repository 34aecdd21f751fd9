"""``vmwarden benchmark``: the command a user runs, end to end, against OpenSCAP.

The CLI reads the qcow2 in a sandboxed worker (vmwarden's OVAL evaluator over dissect, no
mount); OpenSCAP evaluates the same filesystem mounted read-only. Per-rule results and
the score must be the same.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from lxml import etree

from tests.scap.conftest import DEBIAN_IMAGE
from tests.scap.test_xccdf import DEBIAN11_PLATFORM, PREFIX, XCCDF_NS, oscap_eval


def vmwarden(*args: str | Path) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "vmwarden.cli.main", "benchmark", *map(str, args)]
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=300)


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of the Debian image (its directory is the one the worker may read)."""
    if not DEBIAN_IMAGE.is_file():
        pytest.fail(f"{DEBIAN_IMAGE} missing: bash scripts/build-debian-image.sh")
    out = tmp_path_factory.mktemp("img") / "debian.qcow2"
    shutil.copyfile(DEBIAN_IMAGE, out)
    return out


@pytest.fixture(scope="module")
def no_platform(ssg_debian11_ds: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ds") / "ssg-debian11-ds.xml"
    out.write_text(ssg_debian11_ds.read_text().replace(DEBIAN11_PLATFORM, ""))
    return out


@pytest.mark.parametrize("profile", ["anssi_np_nt28_high", "standard"])
def test_benchmark_json_agrees_with_openscap_on_the_same_filesystem(
    profile: str,
    image: Path,
    ssg_debian11_ds: Path,
    no_platform: Path,
    debian_root: Path,
    tmp_path: Path,
) -> None:
    ran = vmwarden(
        image, "--datastream", ssg_debian11_ds, "--profile", profile, "--ignore-platform",
        "--format", "json",
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    doc = json.loads(ran.stdout)
    ref = oscap_eval(no_platform, debian_root, PREFIX + profile, tmp_path)
    mine = {r["id"]: r["result"] for r in doc["rules"]}
    selected = {k: v for k, v in ref.rules.items() if v != "notselected"}
    assert mine == selected
    assert doc["score"] == pytest.approx(ref.score, abs=1e-4)
    assert doc["profile"] == PREFIX + profile
    assert {"pass", "fail"} <= set(mine.values())
    for rule in doc["rules"]:  # each rule names its OVAL definition, listed with its result
        for def_id, result in rule["definitions"].items():
            assert doc["definitions"][def_id]["result"] == result
    assert 0 < doc["stats"]["bytes_read"] < doc["stats"]["image_bytes"]


def test_benchmark_table_and_platform(image: Path, ssg_debian11_ds: Path) -> None:
    """Without --ignore-platform, Debian 11 content on a Debian 12 disk is not applicable."""
    ran = vmwarden(image, "--datastream", ssg_debian11_ds, "--profile", "anssi_np_nt28_minimal")
    assert ran.returncode == 0, ran.stderr
    last = ran.stdout.strip().splitlines()[-1]
    assert "score 0.00 of 100" in last and "notapplicable" in last
    assert "platform does not apply" in last
    assert "pass " not in ran.stdout


def test_user_mistakes_are_one_line_errors(
    image: Path, ssg_debian11_ds: Path, tmp_path: Path
) -> None:
    ran = vmwarden(image, "--datastream", ssg_debian11_ds, "--profile", "nope")
    assert ran.returncode == 2
    assert "no profile 'nope'" in ran.stderr and "anssi_np_nt28_high" in ran.stderr
    assert "Traceback" not in ran.stderr
    notds = tmp_path / "policy.xml"
    notds.write_text("<policy/>")
    ran = vmwarden(image, "--datastream", notds)
    assert ran.returncode == 2 and "not an SCAP" in ran.stderr
    assert "Traceback" not in ran.stderr
    garbage = tmp_path / "garbage.qcow2"
    garbage.write_bytes(b"QFI\xfb" + b"\0" * 100)
    ran = vmwarden(garbage, "--datastream", ssg_debian11_ds, "--profile", "standard")
    assert ran.returncode != 0 and "Traceback" not in ran.stderr
    assert str(garbage) in ran.stderr


XCCDF_XSD = Path("/usr/share/openscap/schemas/xccdf/1.2/xccdf_1.2.xsd")


def test_benchmark_arf_is_valid_and_openscap_reads_it(
    image: Path, ssg_debian11_ds: Path, tmp_path: Path
) -> None:
    """``--format arf``: OpenSCAP's validator accepts the result datastream, its TestResult is
    valid XCCDF 1.2, and ``oscap xccdf generate report`` renders it with vmwarden's score."""
    ran = subprocess.run(
        [sys.executable, "-m", "vmwarden.cli.main", "benchmark", str(image), "--datastream",
         str(ssg_debian11_ds), "--profile", "anssi_np_nt28_high", "--ignore-platform",
         "--format", "arf"],
        capture_output=True, check=False, timeout=300,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    arf = tmp_path / "arf.xml"
    arf.write_bytes(ran.stdout)
    check = subprocess.run(
        ["oscap", "ds", "rds-validate", str(arf)], capture_output=True, check=False
    )
    assert check.returncode == 0, check.stderr
    test = etree.parse(str(arf)).getroot().find(f".//{{{XCCDF_NS}}}TestResult")
    assert test is not None
    schema = etree.XMLSchema(etree.parse(str(XCCDF_XSD)))
    alone = etree.ElementTree(etree.fromstring(etree.tostring(test)))
    assert schema.validate(alone), schema.error_log.last_error
    results = [r.findtext(f"{{{XCCDF_NS}}}result") for r in test.iter(f"{{{XCCDF_NS}}}rule-result")]
    assert results.count("pass") == 25 and results.count("fail") == 23  # as oscap's own run
    report = subprocess.run(
        ["oscap", "xccdf", "generate", "report", str(arf)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert report.returncode == 0, report.stderr
    assert "32.81" in report.stdout and "sshd_disable_root_login" in report.stdout

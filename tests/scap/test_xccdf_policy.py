"""The ``benchmark`` policy filter end to end: a sweep of a test-driver host whose VM's disk
is the real Debian image; the disk is benchmarked in the sandboxed worker during
inspection, kept with its facts, judged by the filter, and the VM below its baseline is
quarantined. A second sweep of the unchanged estate reuses the results."""

from __future__ import annotations

import html
import json
import re
import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.scap.conftest import DEBIAN_IMAGE
from tests.web.conftest import serve_app
from vmwarden.api import Settings, create_app
from vmwarden.api.tokens import mint
from vmwarden.engine.fleetgen import FleetDisk, FleetNic, FleetVM, write_fleet
from vmwarden.engine.scan import Sweep, SweepOptions
from vmwarden.policy import parse_policy
from vmwarden.policy.filters.benchmark import benchmark_key
from vmwarden.store import Store
from vmwarden.store.users import UsersRepo

PROFILE = "anssi_np_nt28_high"  # OpenSCAP scores the image 32.8125 (test_xccdf.py)


def policy(ds: Path) -> str:
    bench = f"type: benchmark, datastream: {ds}, profile: {PROFILE}"
    return f"""\
version: 1
quarantine: {{network: quarantine}}
rules:
  - name: below-baseline
    resource: vm
    severity: high
    filters: [{{{bench}, ignore_platform: true, min_score: 80}}]
    actions: [quarantine]
  - {{name: above-30, resource: vm, severity: low,
      filters: [{{{bench}, ignore_platform: true, min_score: 30}}]}}
  - {{name: no-cron, resource: vm, severity: low,
      filters: [{{{bench}, ignore_platform: true, rules: [package_cron_installed]}}]}}
  - {{name: root-ssh, resource: vm, severity: low,
      filters: [{{{bench}, ignore_platform: true, rules: [sshd_disable_root_login]}}]}}
  - {{name: wrong-release, resource: vm, severity: low,
      filters: [{{{bench}, min_score: 80}}]}}
  - {{name: no-such-profile, resource: vm, severity: low,
      filters: [{{type: benchmark, datastream: {ds}, profile: nope, min_score: 80}}]}}
"""


@pytest.fixture(scope="module")
def sweeps(ssg_debian11_ds: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("bench-estate")
    images = root / "images"
    images.mkdir()
    disk = images / "web.qcow2"
    shutil.copyfile(DEBIAN_IMAGE, disk)
    vm = FleetVM(
        uuid="5e1f0000-0000-4000-8000-0000000000b1",
        name="web",
        state="shutoff",
        disks=[FleetDisk(str(disk))],
        nics=[FleetNic("52:54:00:5e:00:b1", "prod")],
    )
    overlay = images / "db.qcow2"  # a second disk (a clone of web's), judged in parallel
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(disk), "-F", "qcow2", str(overlay)],
        check=True,
    )
    db = FleetVM(
        uuid="5e1f0000-0000-4000-8000-0000000000b2",
        name="db",
        state="shutoff",
        disks=[FleetDisk(str(overlay))],
        nics=[FleetNic("52:54:00:5e:00:b2", "prod")],
    )
    host = write_fleet(root / "hv.xml", [vm, db], networks=["prod", "quarantine"])
    policy_path = root / "policy.yaml"
    policy_path.write_text(policy(ssg_debian11_ds))
    db_url = f"sqlite:///{root / 'db.sqlite'}"
    with Store.open(db_url) as store:
        sweep = Sweep(
            store,
            parse_policy(policy(ssg_debian11_ds)),
            actor="t",
            options=SweepOptions(images_dirs=[images]),
        )
        first = sweep.run([f"test://{host}"], enforce=True)
        second = sweep.run([f"test://{host}"])
        with sqlite3.connect(root / "db.sqlite") as db:
            cached = db.execute("SELECT facts FROM guest_facts WHERE path = ?", (str(disk),))
            row = json.loads(cached.fetchone()[0])
        token, token_id, token_hash = mint()
        UsersRepo(store).add_user("artur", "auditor", token_id, token_hash, actor="t", reason="t")
    settings = Settings(
        db_url=db_url, policy_path=policy_path, uris=(f"test://{host}",), image_dirs=(images,)
    )
    return {
        "first": first,
        "second": second,
        "ds": ssg_debian11_ds,
        "row": row,
        "settings": settings,
        "token": token,
    }


def test_a_vm_below_its_baseline_is_a_finding_with_score_and_failed_rules(sweeps: dict) -> None:
    first = sweeps["first"]
    by = {(f.rule, f.name): f for f in first.findings}
    assert set(by) == {
        (rule, vm)
        for vm in ("web", "db")
        for rule in (
            "below-baseline",
            "no-cron",
            "wrong-release",  # unknown, see below
            "no-such-profile",  # unknown: the evaluation failed, the reason says why
        )
    }, [(f.rule, f.name, f.evidence) for f in first.findings]
    assert by[("below-baseline", "db")].evidence == by[("below-baseline", "web")].evidence
    ev = by[("below-baseline", "web")].evidence
    assert ev["score"] == pytest.approx(32.8125, abs=1e-4)  # OpenSCAP's score of this disk
    assert ev["min_score"] == 80
    assert ev["failed_count"] == 23 and "package_cron_installed" in ev["failed"]
    assert "sshd_disable_root_login" not in ev["failed"]  # it passes
    assert by[("no-cron", "web")].evidence["failed"] == ["package_cron_installed"]


def test_the_vm_below_its_baseline_is_quarantined(sweeps: dict) -> None:
    acted = [a for a in sweeps["first"].actions if a.action == "quarantine"]
    assert sorted((a.name, a.status) for a in acted) == [("db", "done"), ("web", "done")]


def test_content_for_another_release_is_unknown_not_a_low_score(sweeps: dict) -> None:
    """Debian 11 content on a Debian 12 disk: every rule is notapplicable, the score 0 --
    that is no evidence of a weak baseline, so the verdict is unknown and says why."""
    vm = next(v for v in sweeps["first"].vms if v.name == "web")
    assert vm.guest is not None and vm.guest.benchmarks is not None
    strict = vm.guest.benchmarks[benchmark_key(str(sweeps["ds"]), PROFILE, False)]
    assert strict["platform_applicable"] is False and strict["score"] == 0.0
    found = next(f for f in sweeps["first"].findings if f.rule == "wrong-release")
    assert "platform does not apply" in found.evidence["unknown"]
    assert "score" not in found.evidence


def test_results_are_kept_with_the_facts_and_reused(sweeps: dict) -> None:
    def results(scan: Any) -> dict[str, Any]:
        vm = next(v for v in scan.vms if v.name == "web")
        return vm.guest.benchmarks

    first, second = results(sweeps["first"]), results(sweeps["second"])
    assert first == second  # evaluated_at included: read from the facts cache, not again
    assert sweeps["row"]["benchmarks"] == first  # the facts cache row holds them
    assert {(f.rule, f.name) for f in sweeps["second"].findings} >= {
        ("below-baseline", "web"),
        ("no-cron", "web"),
    }


def test_the_dashboard_shows_the_vms_baseline_score_and_failed_rules(sweeps: dict) -> None:
    with (
        serve_app(create_app(sweeps["settings"])) as base,
        httpx.Client(base_url=base, follow_redirects=True, timeout=30) as web,
    ):
        form = web.get("/login").text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', form)
        assert csrf is not None
        web.post("/login", data={"token": sweeps["token"], "csrf_token": csrf.group(1)})
        page = web.get("/vms/web")
    assert page.status_code == 200
    text = re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page.text)))
    assert f"Baseline {PROFILE} ssg-debian11-ds.xml score 32.8 of 100" in text
    assert "23 failed rules" in text and "package_cron_installed" in text
    assert "the content's platform does not apply" in text  # the strict (no ignore) one


def test_a_failed_evaluation_is_unknown_with_its_reason(sweeps: dict) -> None:
    found = next(f for f in sweeps["first"].findings if f.rule == "no-such-profile")
    assert found.evidence["unknown"].startswith("benchmark not evaluated: no profile 'nope'")

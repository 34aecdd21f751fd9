"""``vmwarden report compliance`` through the real CLI, over a store a real demo scan filled.

Expected verdicts are derived from the demo's own expected findings (``DemoEstate.expected``),
never typed in: a control fails exactly where the demo put a problem its rules detect.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from tests.cli.conftest import Cli
from tests.compliance.conftest import scanned_store
from vmwarden.engine.demo import DemoEstate
from vmwarden.engine.fleetgen import FleetNic, FleetVM, write_fleet


def _by_id(report: dict) -> dict[str, dict]:
    return {c["id"]: c for c in report["controls"]}


def _expected(demo: DemoEstate, *rules: str) -> int:
    """How many findings of ``rules`` the demo promises."""
    return sum(1 for got in demo.expected.values() for r in got if r in rules)


def test_cis_controls_fail_exactly_where_the_demo_findings_are(demo_scanned: Cli, demo):
    ran = demo_scanned(
        "report", "compliance", "--framework", "cis-controls-v8", "-p", demo.policy_path,
        "--format", "json",
    )  # fmt: skip
    assert ran.code == 0, ran.err
    report = ran.json()
    controls = _by_id(report)
    assert list(controls) == ["1.1", "1.2", "1.3", "1.5", "2.1", "2.2", "2.3", "4.1", "7.5"]

    # 2.3 unauthorised software: the telnetd/netcat rule on the rogue VMs
    sw = controls["2.3"]
    assert sw["status"] == "fail"
    assert sw["rules"] == ["forbidden-software"]
    assert sw["findings"]["open"] == _expected(demo, "forbidden-software") > 0
    assert {x["name"] for x in sw["findings"]["examples"]} == {
        vm for vm, got in demo.expected.items() if "forbidden-software" in got
    }
    assert sw["findings"]["worst_severity"] == "high"

    # 7.5 vulnerability scans: a scan ran (process) and the vulnerable-package rule fired
    vuln = controls["7.5"]
    assert vuln["status"] == "fail"
    assert vuln["rules"] == ["vulnerable-package"]
    assert vuln["findings"]["open"] == _expected(demo, "vulnerable-package") > 0
    assert vuln["reasons"][0].startswith("last completed scan")

    # 1.2 unauthorised assets: mapped by filter type (unregistered, not-approved-template)
    assets = controls["1.2"]
    assert assets["status"] == "fail"
    assert set(assets["rules"]) == {"unapproved-template", "unregistered-vm"}
    assert assets["findings"]["open"] == _expected(demo, "unapproved-template", "unregistered-vm")

    # 4.1 secure configuration: ssh root login, time sync, world-readable images
    conf = controls["4.1"]
    assert set(conf["rules"]) == {"ssh-root-login", "no-time-sync", "world-readable-image"}
    assert conf["findings"]["open"] == _expected(
        demo, "ssh-root-login", "no-time-sync", "world-readable-image"
    )

    # inventory and discovery: satisfied by the scan over the demo's hosts
    for cid in ("1.1", "1.3", "1.5"):
        assert controls[cid]["status"] == "pass", controls[cid]
    assert len(report["scan"]["hosts"]) == len(demo.uris)
    assert report["scan"]["last_scan_finished"] is not None
    assert sorted(report["scan"]["uris"]) == sorted(demo.uris)

    # the demo policy has no stale-patches rule: 2.2 has no evidence, so it is not assessed
    assert controls["2.2"]["status"] == "not-assessed"
    assert report["summary"] == {
        s: sum(1 for c in controls.values() if c["status"] == s)
        for s in ("pass", "fail", "not-assessed")
    }


def test_controls_pass_on_a_host_without_those_problems(tmp_path: Path, demo):
    """hv-lab carries only the mixed-classification problem: software, vulnerability and
    asset controls pass there, from the same rules that fail them on the whole estate."""
    cli = scanned_store(tmp_path, demo, hosts=("hv-lab",))
    ran = cli("report", "compliance", "--framework", "cis-controls-v8", "-p", demo.policy_path,
              "--format", "json")  # fmt: skip
    controls = _by_id(ran.json())
    for cid in ("1.1", "1.2", "2.3", "4.1", "7.5"):
        assert controls[cid]["status"] == "pass", controls[cid]
        assert controls[cid]["findings"]["open"] == 0
    assert controls["7.5"]["rules"] == ["vulnerable-package"]


def test_every_shipped_framework_renders_in_every_format(demo_scanned: Cli, demo):
    for name, ids in {
        "cis-controls-v8": ["1.1", "2.3", "7.5"],
        "pci-dss-4.0": ["2.2", "6.3.3", "11.3.1", "12.5.1"],
        "nist-800-53": ["CM-2", "CM-7", "CM-8", "RA-5", "SI-2"],
        "disa-vmm-srg": ["V-207474"],
    }.items():
        args = ("report", "compliance", "--framework", name, "-p", demo.policy_path)
        as_json = demo_scanned(*args, "--format", "json")
        assert as_json.code == 0, as_json.err
        got = _by_id(as_json.json())
        assert set(ids) <= set(got), name
        table = demo_scanned(*args)
        assert table.code == 0 and "Traceback" not in table.err, table.err
        assert all(i in table.out for i in ids)
        rows = list(csv.reader(io.StringIO(demo_scanned(*args, "--format", "csv").out)))
        assert rows[0][:3] == ["id", "title", "status"]
        assert [r[0] for r in rows[1:]] == list(got)
        page = demo_scanned(*args, "--format", "html")
        assert page.out.startswith("<!doctype html>") and all(i in page.out for i in ids)
    pci = _by_id(demo_scanned("report", "compliance", "--framework", "pci-dss-4.0", "-p",
                              demo.policy_path, "--format", "json").json())  # fmt: skip
    assert pci["6.3.3"]["status"] == "fail" and pci["12.5.1"]["status"] == "fail"


def test_the_stale_vm_gate_of_hosts_elsewhere_is_not_assessed_here(demo_scanned: Cli, demo):
    """The demo's hosts are test-driver files, not this machine's libvirtd: whether a hook
    runs there cannot be read here, so V-207474 is not assessed (never passed, never failed
    on this host's hook)."""
    report = demo_scanned(
        "report", "compliance", "--framework", "disa-vmm-srg", "-p", demo.policy_path,
        "--format", "json",
    ).json()  # fmt: skip
    (control,) = report["controls"]
    assert control["status"] == "not-assessed"
    assert control["reasons"][0].startswith("the gate holds dormant VMs")
    assert "`vmwarden hook status` must be checked on test:///" in control["reasons"][0]


def test_a_policy_changed_after_the_scan_is_warned_about(tmp_path: Path, demo):
    """A rule added after the last scan has no findings because it never ran, not because
    the estate is clean: the report says so (stderr, JSON ``warnings``, HTML)."""
    cli = scanned_store(tmp_path, demo, hosts=("hv-lab",))
    args = ["report", "compliance", "--framework", "cis-controls-v8", "-p", demo.policy_path]
    fresh = cli(*args, "--format", "json")
    assert fresh.json()["warnings"] == [] and "warning:" not in fresh.err
    edited = tmp_path / "edited.yaml"
    edited.write_text(demo.policy_path.read_text())  # written now: after the scan
    stale = cli(*args[:-1], edited, "--format", "json")
    (warning,) = stale.json()["warnings"]
    assert "changed after the last scan started" in warning
    assert "warning:" in stale.err and "changed after the last scan" in stale.err
    assert "changed after the last scan" in cli(*args[:-1], edited, "--format", "html").out


def test_without_a_policy_rule_controls_are_not_assessed(demo_scanned: Cli):
    report = demo_scanned(
        "report", "compliance", "--framework", "cis-controls-v8", "--format", "json"
    ).json()
    controls = _by_id(report)
    assert report["policy"] is None
    assert controls["2.3"]["status"] == "not-assessed"
    assert "no policy given" in controls["2.3"]["reasons"][0]
    assert controls["1.1"]["status"] == "pass"  # the scan itself is still evidence


def test_an_empty_store_fails_inventory_and_assesses_no_rule(cli: Cli, demo):
    report = cli(
        "report", "compliance", "--framework", "cis-controls-v8", "-p", demo.policy_path,
        "--format", "json",
    ).json()  # fmt: skip
    controls = _by_id(report)
    assert controls["1.1"]["status"] == "fail"
    assert controls["1.1"]["reasons"] == ["no completed scan is recorded in this store"]
    assert controls["2.3"]["status"] == "not-assessed"


def test_a_mapping_with_an_unknown_filter_is_refused_naming_file_and_control(
    cli: Cli, tmp_path: Path
):
    mapping = tmp_path / "mine.yaml"
    mapping.write_text(
        "framework: mine\ntitle: Mine\ncontrols:\n"
        '  - {id: "9.9", title: Ok, filters: [vulnerable]}\n'
        '  - {id: "9.10", title: Typo, filters: [vulnerabel]}\n'
    )
    ran = cli("report", "compliance", "--framework", mapping, "--format", "json")
    assert ran.code == 2
    assert "Traceback" not in ran.err
    assert f"{mapping}: control 9.10: unknown filter 'vulnerabel'" in ran.err
    assert "9.9:" not in ran.err
    assert ran.out == ""


def test_unknown_framework_and_missing_framework_are_clear_errors(cli: Cli):
    ran = cli("report", "compliance", "--framework", "sox")
    assert ran.code == 2 and "unknown framework 'sox'" in ran.err
    assert "cis-controls-v8" in ran.err and "Traceback" not in ran.err
    ran = cli("report", "compliance")
    assert ran.code == 2 and "--framework" in ran.err and "Traceback" not in ran.err
    ran = cli("report", "findings", "--framework", "cis-controls-v8")
    assert ran.code == 2 and "apply to `report compliance` only" in ran.err


def test_html_escapes_a_hostile_vm_name(cli: Cli, tmp_path: Path):
    evil = '<img src=x onerror="alert(1)">&amp'
    vm = FleetVM(
        uuid="4d000000-0000-4000-8000-000000000001",
        name=evil,
        nics=[FleetNic("52:54:00:4d:00:01", "prod")],
    )
    host = write_fleet(tmp_path / "hv1.xml", [vm], networks=["prod"])
    policy = tmp_path / "p.yaml"
    policy.write_text(
        "version: 1\nrules:\n"
        "  - {name: rogue, resource: vm, severity: high, filters: [{or: [unregistered]}]}\n"
    )
    assert cli("scan", "-c", f"test://{host}", "-p", policy).code == 0
    page = cli("report", "compliance", "--framework", "cis-controls-v8", "-p", policy,
               "--format", "html").out  # fmt: skip
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&amp;amp" in page
    # the only elements are the page's own: nothing from the VM name, nothing fetched
    tags = set(re.findall(r"<([a-z!][a-z0-9]*)", page))
    assert tags <= {"!doctype", "html", "head", "meta", "title", "style", "body", "h1", "p",
                    "table", "thead", "tbody", "tr", "th", "td", "ul", "li"}, tags  # fmt: skip
    assert "url(" not in page and "@import" not in page
    control = _by_id(
        cli("report", "compliance", "--framework", "cis-controls-v8", "-p", policy,
            "--format", "json").json()
    )["1.2"]  # fmt: skip
    assert control["status"] == "fail" and control["rules"] == ["rogue"]  # through `or`
    assert control["findings"]["examples"][0]["name"] == evil


def test_only_a_local_libvirtd_has_its_hook_read_here():
    from vmwarden.connectors.capabilities import start_hook

    _is_local = start_hook().serves  # the platform's start hook says which URIs it gates
    assert _is_local("qemu:///system") and _is_local("qemu+unix:///system")
    assert not _is_local("qemu+ssh://root@hv1/system")
    assert not _is_local("qemu+tcp://hv1/system")
    assert not _is_local("test:///tmp/hv1.xml")

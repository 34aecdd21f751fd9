"""``vmwarden scan`` and ``vmwarden demo``: formats, exit codes, and bad input refused cleanly."""

from __future__ import annotations

import collections
import json
import textwrap
from pathlib import Path

import pytest


def verdict(findings: list[dict]) -> dict[str, list[str]]:
    got = collections.defaultdict(list)
    for f in findings:
        got[f["name"]].append(f["rule"])
    return {name: sorted(rules) for name, rules in got.items()}


def assert_clean_refusal(ran, *needles: str) -> str:
    """Exit 2, no traceback, and one ``error:`` line that says what is wrong."""
    assert ran.code == 2, (ran.code, ran.out, ran.err)
    assert "Traceback" not in ran.err + ran.out
    (line,) = ran.error_lines()
    for needle in needles:
        assert needle in line, (needle, line)
    return line


def assert_nothing_applied(cli, demo) -> None:
    audit = cli("report", "audit", "--format", "json")
    assert audit.code == 0 and audit.json() == [], audit.err
    vms = cli("report", "vms", "--format", "json")
    assert vms.code == 0 and vms.json() == []
    notified = demo.policy_path.parent / "notifications.ocsf.jsonl"
    assert not notified.exists() or notified.read_text() == ""


# --- happy paths ------------------------------------------------------------------------------


def test_scan_json_finds_the_demo_verdict(cli, demo, demo_args):
    ran = cli("scan", *demo_args, "--format", "json")
    assert ran.code == 0, ran.err
    doc = ran.json()
    assert verdict(doc["findings"]) == demo.expected
    assert {"vms", "images", "findings", "actions"} <= set(doc)
    assert {"id", "name", "host", "state"} <= set(doc["vms"][0])
    assert {"path", "digest", "attached_to"} <= set(doc["images"][0])
    assert {a["status"] for a in doc["actions"]} == {"dry-run"}
    assert {h for h in (vm["host"] for vm in doc["vms"])} == set(demo.hosts)


def test_scan_table_summarises(cli, demo_args, demo):
    ran = cli("scan", *demo_args)
    assert ran.code == 0, ran.err
    total = sum(len(r) for r in demo.expected.values())
    assert f"{total} findings" in ran.out
    assert "Findings" in ran.out and "Actions" in ran.out
    assert "dry-run" in ran.out and "--enforce" in ran.out


def test_scan_ocsf_is_one_detection_finding_per_line(cli, demo_args, demo):
    ran = cli("scan", *demo_args, "--format", "ocsf")
    assert ran.code == 0, ran.err
    events = [json.loads(line) for line in ran.out.splitlines() if line.strip()]
    assert len(events) == sum(len(r) for r in demo.expected.values())
    for event in events:
        assert event["class_uid"] == 2004
        assert event["finding_info"]["title"] in demo.expected[event["resources"][0]["name"]]


@pytest.mark.parametrize(
    ("threshold", "code"), [("high", 3), ("medium", 3), ("critical", 0), ("HIGH", 3)]
)
def test_fail_on(cli, demo_args, threshold, code):
    ran = cli("scan", *demo_args, "--format", "json", "--fail-on", threshold)
    assert ran.code == code, ran.err
    assert ran.json()["findings"], "the result is printed whatever the exit code"


def test_demo_json_finds_exactly_the_expected_mapping(cli, tmp_path):
    from vmwarden.engine.demo import build_demo_estate

    ran = cli("demo", "--workdir", tmp_path / "wd", "--json", "--no-vsphere", db=False)
    assert ran.code == 0, ran.err
    expected = build_demo_estate(tmp_path / "again").expected
    assert verdict(ran.json()["findings"]) == expected
    assert (tmp_path / "wd" / "demo.db").is_file()


def test_domain_without_devices_scans(cli, demo, tmp_path, corpus_dir):
    domain = (corpus_dir / "arm-vexpressa9-nodevs.xml").read_text()
    host = tmp_path / "arm-lab.xml"
    host.write_text(f"<node>\n{domain}\n</node>\n")
    ran = cli("scan", "-c", f"test://{host}", "-p", demo.policy_path, "--format", "json")
    assert ran.code == 0, ran.err
    doc = ran.json()
    (vm,) = doc["vms"]
    assert (vm["name"], vm["host"], vm["disks"], vm["nics"]) == ("armtest", "arm-lab", [], [])
    # no metadata: unregistered; no disk: not judged by lineage, and nothing to inspect, so
    # no guest rule judges it and not-inspected says why; no NIC: no zone, no MAC
    assert verdict(doc["findings"]) == {"armtest": ["not-inspected", "unregistered-vm"]}
    (why,) = [f for f in doc["findings"] if f["rule"] == "not-inspected"]
    assert why["evidence"]["reason"] == "nothing-to-inspect"


# --- bad input: one clear line, exit 2, nothing applied -------------------------------------


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_malformed_yaml_names_file_and_line(cli, demo, tmp_path):
    bad = write(
        tmp_path,
        "bad.yaml",
        """\
        version: 1
        rules:
          - name: x
            resource: vm
           severity: high
        """,
    )
    uris = [a for u in demo.uris for a in ("-c", u)]
    ran = cli("scan", *uris, "-p", bad, "--enforce")
    assert_clean_refusal(ran, "bad.yaml:5")
    assert_nothing_applied(cli, demo)


def test_unknown_filter_lists_the_valid_ones(cli, demo, tmp_path):
    bad = write(
        tmp_path,
        "unknown.yaml",
        """\
        version: 1
        rules:
          - name: x
            resource: vm
            severity: high
            filters: [bogus-filter]
            actions: [quarantine]
        quarantine: {network: quarantine}
        """,
    )
    uris = [a for u in demo.uris for a in ("-c", u)]
    line = assert_clean_refusal(cli("scan", *uris, "-p", bad, "--enforce"), "unknown.yaml:6")
    assert "bogus-filter" in line
    for valid in ("not-approved-template", "unregistered", "outside-zone", "dormant"):
        assert valid in line
    assert_nothing_applied(cli, demo)


@pytest.mark.parametrize(
    ("body", "needles"),
    [
        ("filters: [{type: dormant, days: soon}]", ("types.yaml:6", "days", "integer")),
        ("filters: [unregistered]\n    severity: 7", ("types.yaml", "severity")),
        ("filters: unregistered", ("types.yaml:6", "filters")),
    ],
)
def test_wrong_types_are_refused(cli, demo, tmp_path, body, needles):
    bad = write(
        tmp_path,
        "types.yaml",
        "version: 1\nrules:\n  - name: x\n    resource: vm\n    severity: high\n    " + body + "\n",
    )
    assert_clean_refusal(cli("scan", "-c", demo.uris[0], "-p", bad), *needles)
    assert_nothing_applied(cli, demo)


def test_policy_is_checked_before_any_host(cli, tmp_path):
    bad = write(tmp_path, "bad.yaml", "version: 1\nrules: [{name: x}\n")
    ran = cli("scan", "-c", "qemu+tcp://127.0.0.1:1/system", "-p", bad)
    line = assert_clean_refusal(ran, "bad.yaml")
    assert "127.0.0.1" not in line


@pytest.mark.parametrize(
    "uri", ["test:///nonexistent.xml", "qemu+tcp://127.0.0.1:1/system"], ids=["test", "tcp"]
)
def test_unreachable_uri_applies_nothing(cli, demo, uri):
    """No host answers: a clean refusal. (One dead host among live ones no longer stops the
    others: tests/cli/test_cli_scan_outcome.py, #10.6.)"""
    ran = cli("scan", "-c", uri, "-p", demo.policy_path, "--enforce")
    assert_clean_refusal(ran, uri)
    assert "nothing was changed" in ran.err
    assert_nothing_applied(cli, demo)


def test_bad_fail_on_is_refused_before_scanning(cli, demo, demo_args):
    line = assert_clean_refusal(cli("scan", *demo_args, "--fail-on", "severe"), "severe")
    for valid in ("info", "low", "medium", "high", "critical"):
        assert valid in line
    assert_nothing_applied(cli, demo)


def test_missing_policy_file(cli, demo):
    assert_clean_refusal(
        cli("scan", "-c", demo.uris[0], "-p", "/nonexistent/policy.yaml"), "/nonexistent"
    )


def test_no_uri_is_a_usage_error(cli, demo):
    ran = cli("scan", "-p", demo.policy_path)
    assert ran.code == 2
    assert "Traceback" not in ran.err and "-c" in ran.err

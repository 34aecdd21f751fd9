"""Catalog, inspection, manual quarantine/release, reports and help, through the real CLI."""

from __future__ import annotations

import csv
import io
import json
import subprocess
from html.parser import HTMLParser

import pytest
import yaml

from vmwarden.engine.demo import ROGUE_BASE, TEMPLATE
from vmwarden.inspect.digest import digest_file

COMMANDS = [
    [],
    ["scan"],
    ["report"],
    ["quarantine"],
    ["release"],
    ["inspect"],
    ["demo"],
    ["template"],
    ["template", "approve"],
    ["template", "list"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "vmwarden")
def test_every_help_has_an_example(cli, command):
    ran = cli(*command, "--help")
    assert ran.code == 0, ran.err
    assert "Example" in ran.out


# --- the template catalog ---------------------------------------------------------------------


def test_template_approve_list_and_a_scan_using_the_store_catalog(cli, demo, tmp_path):
    # the demo policy without its templates: only the store's catalog can approve anything
    doc = yaml.safe_load(demo.policy_path.read_text())
    doc.pop("templates")
    policy = tmp_path / "no-templates.yaml"
    policy.write_text(yaml.safe_dump(doc))
    uris = [a for u in demo.uris for a in ("-c", u)]

    before = cli("scan", *uris, "-p", policy, "--format", "json")
    assert before.code == 0, before.err
    unapproved = {
        f["name"] for f in before.json()["findings"] if f["rule"] == "unapproved-template"
    }
    rogues = {n for n, rules in demo.expected.items() if "unapproved-template" in rules}
    assert rogues < unapproved  # every VM with a disk is unapproved without a catalog

    image = demo.images_dir / "templates" / f"{TEMPLATE}.qcow2"
    ran = cli("template", "approve", image, "--name", TEMPLATE, "--actor", "alice")
    assert ran.code == 0, ran.err
    assert digest_file(image) in ran.out

    listed = cli("template", "list")
    assert listed.code == 0, listed.err
    (line,) = listed.out.strip().splitlines()
    assert line.split("\t")[:2] == [TEMPLATE, digest_file(image)]

    after = cli("scan", *uris, "-p", policy, "--format", "json")
    assert after.code == 0, after.err
    assert {
        f["name"] for f in after.json()["findings"] if f["rule"] == "unapproved-template"
    } == rogues


def test_approving_a_missing_image_is_refused(cli, tmp_path):
    ran = cli("template", "approve", tmp_path / "nope.qcow2", "--name", "x")
    assert ran.code == 2 and "Traceback" not in ran.err
    assert "nope.qcow2" in ran.err


# --- inspect ----------------------------------------------------------------------------------


def test_inspect_gives_format_chain_and_digest(cli, demo):
    clone = next((demo.images_dir / "hv-east").glob("east-rogue-miner-vd*.qcow2"))
    templates = demo.images_dir / "templates"
    ran = cli("inspect", clone, "--allow-dir", templates)
    assert ran.code == 0, ran.err
    facts = ran.json()
    assert facts["format"] == "qcow2"
    assert facts["digest"] == digest_file(clone)
    assert facts["backing"] == f"../templates/{ROGUE_BASE}.qcow2"
    assert [(layer["path"], layer["error"]) for layer in facts["chain"]] == [
        (str(clone), None),
        (str(templates / f"{ROGUE_BASE}.qcow2"), None),
    ]


def test_inspect_never_follows_a_backing_file_out(cli, tmp_path):
    evil = tmp_path / "evil.qcow2"
    subprocess.run(
        [
            "qemu-img",
            "create",
            "-q",
            "-f",
            "qcow2",
            "-u",
            "-b",
            "/etc/shadow",
            "-F",
            "raw",
            evil,
            "4M",
        ],
        check=True,
    )
    ran = cli("inspect", evil)
    assert ran.code == 0, ran.err
    chain = ran.json()["chain"]
    assert chain[-1]["path"] == "/etc/shadow"
    assert "outside allowed directories" in chain[-1]["error"]


# --- quarantine and release -------------------------------------------------------------------


def test_quarantine_and_release_a_shut_off_vm(cli, demo):
    host = demo.hosts["hv-east"]
    vm = "east-build-04"  # shut off, persistent: only the persistent config changes
    q = cli("quarantine", vm, "-c", f"test://{host}", "-p", demo.policy_path,
            "--reason", "IR-42 unknown binary", "--actor", "alice")  # fmt: skip
    assert q.code == 0, q.err
    assert "done" in q.out

    refused = cli("release", vm, "-c", f"test://{host}")
    assert refused.code == 2 and "--reason" in refused.err
    blank = cli("release", vm, "-c", f"test://{host}", "--reason", "  ")
    assert blank.code == 2 and "Traceback" not in blank.err
    audit = cli("report", "audit", "--format", "json").json()
    assert [(a["action"], a["status"]) for a in audit] == [("quarantine", "done")]

    r = cli("release", vm, "-c", f"test://{host}", "--reason", "rebuilt from template",
            "--actor", "bob")  # fmt: skip
    assert r.code == 0, r.err

    audit = {a["action"]: a for a in cli("report", "audit", "--format", "json").json()}
    quarantine, release = audit["quarantine"], audit["release"]
    assert (quarantine["actor"], quarantine["reason"]) == ("alice", "IR-42 unknown binary")
    assert (release["actor"], release["reason"]) == ("bob", "rebuilt from template")
    assert quarantine["status"] == "released" and release["status"] == "done"
    assert quarantine["name"] == vm and quarantine["host"] == "hv-east"
    (nic,) = quarantine["changes"]["nics"]
    assert (nic["config"], nic["live"]) == ("done", "skipped")  # shut off: nothing live
    assert 'network="prod"' in nic["config_before"]  # what release puts back
    assert quarantine["changes"]["network"] == "quarantine"
    assert [n["config"] for n in release["changes"]["nics"]] == ["done"]

    table = cli("report", "audit")
    assert "alice" in table.out and "bob" in table.out


def test_quarantine_without_a_network_is_refused(cli, demo):
    ran = cli("quarantine", "east-build-04", "-c", demo.uris[0])
    assert ran.code != 0 and "Traceback" not in ran.err
    assert "--network" in ran.err
    assert cli("report", "audit", "--format", "json").json() == []


# --- reports ----------------------------------------------------------------------------------


class _Cells(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.cells: list[str] = []
        self._in = False

    def handle_starttag(self, tag, attrs):
        self._in = tag in ("td", "th")
        if self._in:
            self.cells.append("")

    def handle_endtag(self, tag):
        self._in = False

    def handle_data(self, data):
        if self._in:
            self.cells[-1] += data


@pytest.fixture
def scanned(cli, demo_args):
    ran = cli("scan", *demo_args, "--format", "json")
    assert ran.code == 0, ran.err
    return ran.json()


@pytest.mark.parametrize("what", ["findings", "vms", "images", "audit"])
def test_reports_in_every_format(cli, scanned, what):
    as_json = cli("report", what, "--format", "json")
    assert as_json.code == 0, as_json.err
    rows = as_json.json()
    if what == "findings":
        assert len(rows) == len(scanned["findings"])
        assert {r["severity"] for r in rows} <= {"info", "low", "medium", "high"}
    elif what == "vms":
        assert {r["id"] for r in rows} == {vm["id"] for vm in scanned["vms"]}
    elif what == "images":
        assert {r["path"] for r in rows} == {img["path"] for img in scanned["images"]}
    else:
        assert rows == []  # report only: nothing was done

    as_csv = cli("report", what, "--format", "csv")
    assert as_csv.code == 0, as_csv.err
    table = list(csv.reader(io.StringIO(as_csv.out)))
    if rows:
        assert table[0] == list(rows[0])
        assert len(table) == len(rows) + 1

    as_html = cli("report", what, "--format", "html")
    assert as_html.code == 0, as_html.err
    assert as_html.out.startswith("<!doctype html>")
    cells = _Cells()
    cells.feed(as_html.out)
    if rows:
        assert cells.cells[: len(rows[0])] == list(rows[0])

    as_table = cli("report", what)
    assert as_table.code == 0, as_table.err
    assert f"{what} ({len(rows)})" in as_table.out


def test_report_history_of_a_vm(cli, scanned, demo):
    ran = cli("report", "history", "east-legacy-01", "--format", "json")
    assert ran.code == 0, ran.err
    rows = ran.json()
    by_field = {r["field"]: r for r in rows}
    assert by_field["state"]["new"] == "shutoff" and by_field["state"]["old"] is None
    assert by_field["host"]["new"] == "hv-east"
    assert all(r["at"].endswith("+00:00") and "T" in r["at"] for r in rows)
    csv_out = cli("report", "history", "east-legacy-01", "--format", "csv")
    assert csv_out.out.splitlines()[0] == "vm_id,at,field,old,new,source"


def test_report_history_needs_a_vm(cli, scanned):
    ran = cli("report", "history")
    assert ran.code == 2 and "Traceback" not in ran.err
    assert "VM" in ran.err


def test_report_findings_json_matches_the_scan_contract(cli, scanned):
    stored = cli("report", "findings", "--format", "json").json()
    key = ("rule", "resource", "id", "name", "host", "severity", "evidence")
    assert sorted(json.dumps([r[k] for k in key]) for r in stored) == sorted(
        json.dumps([f[k] for k in key]) for f in scanned["findings"]
    )

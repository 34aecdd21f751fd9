"""``vmwarden scan -c aws://us-east-1`` end to end against moto, and the ``aws_image`` key.

The scan runs as an operator runs it (``python -m vmwarden.cli.main`` in a subprocess, a real
SQLite file); the estate is built in moto's server with real boto3 calls.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.connectors.aws.ec2_estate import ami, launch, network
from vmwarden.errors import PolicyError
from vmwarden.policy import parse_policy

POLICY = """\
version: 1
templates:
  - {{name: golden, aws_image: {golden}}}
zones:
  pci: {{networks: [pci-a, {pci_b}], classifications: [pci]}}
  dev: {{networks: [dev], classifications: [dev]}}
rules:
  - name: unapproved-template
    resource: vm
    severity: high
    filters: [not-approved-template]
  - name: outside-zone
    resource: vm
    severity: high
    filters: [outside-zone]
  - name: co-mingled
    resource: vm
    severity: medium
    filters: [mixed-classification-on-host]
"""


def _scan(
    tmp_path: Path, *args: str, drop: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["VMWARDEN_DB"] = f"sqlite:///{tmp_path / 'vmwarden.db'}"
    # --no-inspect: moto's EBS direct APIs cannot read the snapshots a sweep takes (500), so
    # every volume would be uninspectable here; test_aws_inspect covers reading them
    return subprocess.run(
        [sys.executable, "-m", "vmwarden.cli.main", "scan", "--no-inspect", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )


def test_scan_finds_the_unapproved_ami_and_the_instance_outside_its_zone(
    ec2: Any, tmp_path: Path
) -> None:
    golden = ami(ec2, "golden")
    unvetted = ami(ec2, "someone-elses-build")
    public = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    subnets = network(
        ec2, "10.7.0.0/16", {"pci-a": "10.7.1.0/24", "pci-b": "10.7.2.0/24", "dev": "10.7.9.0/24"}
    )
    pci = {"vmwarden:classification": "pci", "vmwarden:owner": "ops"}
    ok = launch(ec2, golden, subnets["pci-a"], {"Name": "ok", **pci})  # zone by Name tag
    ok_b = launch(ec2, golden, subnets["pci-b"], {"Name": "ok-b", **pci})  # zone by subnet id
    rogue = launch(ec2, unvetted, subnets["pci-a"], {"Name": "rogue", **pci})
    stock = launch(ec2, public, subnets["pci-a"], {"Name": "stock", **pci})
    astray = launch(ec2, golden, subnets["dev"], {"Name": "astray", **pci})
    # another classification on shared hardware: no host, so no co-location finding
    launch(ec2, golden, subnets["dev"], {"Name": "dev-box", "vmwarden:classification": "dev"})
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.format(golden=golden, pci_b=subnets["pci-b"]))

    ran = _scan(tmp_path, "-c", "aws://us-east-1", "-p", str(policy), "--format", "json")
    assert ran.returncode in (0, 1), ran.stderr
    doc = json.loads(ran.stdout)
    found = {(f["rule"], f["id"]) for f in doc["findings"]}
    assert found == {
        ("unapproved-template", rogue),
        ("unapproved-template", stock),
        ("outside-zone", astray),
    }, doc["findings"]
    assert {vm["id"] for vm in doc["vms"]} >= {ok, ok_b, rogue, stock, astray}
    assert "test-secret-do-not-log" not in ran.stdout + ran.stderr
    again = _scan(tmp_path, "-c", "aws://us-east-1", "-p", str(policy), "--format", "json")
    assert again.returncode == ran.returncode, again.stderr  # the store's second sweep
    assert {(f["rule"], f["id"]) for f in json.loads(again.stdout)["findings"]} == found


def test_scan_without_credentials_is_one_line_and_exit_2(aws_env: str, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.format(golden="ami-0abc1234", pci_b="subnet-1"))
    keys = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    ran = _scan(tmp_path, "-c", "aws://us-east-1", "-p", str(policy), drop=keys)
    assert ran.returncode == 2, (ran.stdout, ran.stderr)
    assert "no AWS credentials for us-east-1" in ran.stderr
    assert "Traceback" not in ran.stderr


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("{name: t, aws_image: ami-0abc1234, digest: sha256:" + "a" * 64 + "}", "exactly one"),
        ("{name: t}", "exactly one"),
        ("{name: t, aws_image: 'ami-x; rm -rf /'}", "AMI id"),
    ],
)
def test_a_template_has_one_identity(entry: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        parse_policy(f"version: 1\ntemplates:\n  - {entry}\n")


def test_an_aws_image_is_in_the_catalog() -> None:
    policy = parse_policy("version: 1\ntemplates:\n  - {name: golden, aws_image: ami-0abc1234}\n")
    assert policy.catalog() == {"ami-0abc1234": "golden"}


def test_enforcing_on_ec2_without_an_aws_group_refuses_clearly_and_changes_nothing(
    ec2: Any, tmp_path: Path
) -> None:
    # a policy naming only libvirt's network: --enforce must say so, not half-act or crash
    unvetted = ami(ec2, "unvetted")
    subnets = network(ec2, "10.8.0.0/16", {"a": "10.8.1.0/24"})
    iid = launch(ec2, unvetted, subnets["a"], {"Name": "rogue"})
    groups_before = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0][
        "SecurityGroups"
    ]
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "version: 1\nquarantine: {network: quarantine}\nrules:\n"
        "  - {name: unapproved, resource: vm, severity: high,"
        " filters: [not-approved-template], actions: [quarantine]}\n"
    )
    ran = _scan(tmp_path, "-c", "aws://us-east-1", "-p", str(policy), "--enforce")
    assert ran.returncode != 0
    assert "Traceback" not in ran.stderr
    assert "names no quarantine.aws.security_group" in ran.stdout + ran.stderr
    after = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    assert after["SecurityGroups"] == groups_before


def test_classifications_mixed_on_a_dedicated_host_are_found(ec2: Any, tmp_path: Path) -> None:
    golden = ami(ec2, "golden")
    subnets = network(ec2, "10.9.0.0/16", {"pci-a": "10.9.1.0/24", "dev": "10.9.9.0/24"})
    host = ec2.allocate_hosts(AvailabilityZone="us-east-1a", InstanceType="t3.micro", Quantity=1)
    on_host = {"Placement": {"HostId": host["HostIds"][0], "Tenancy": "host"}}
    pci = launch(ec2, golden, subnets["pci-a"], {"vmwarden:classification": "pci"}, **on_host)
    dev = launch(ec2, golden, subnets["dev"], {"vmwarden:classification": "dev"}, **on_host)
    launch(ec2, golden, subnets["dev"], {"vmwarden:classification": "dev"})  # shared hardware
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.format(golden=golden, pci_b="subnet-1"))
    ran = _scan(tmp_path, "-c", "aws://us-east-1", "-p", str(policy), "--format", "json")
    assert ran.returncode in (0, 1), ran.stderr
    found = {(f["rule"], f["id"]) for f in json.loads(ran.stdout)["findings"]}
    assert found == {("co-mingled", pci), ("co-mingled", dev)}

"""Issue 14's "done means", as an operator runs it: ``vmwarden scan -c aws://us-east-1 -p
policy.yaml --enforce`` against moto quarantines an instance launched from an unapproved AMI
and one in a subnet outside its zone, leaves the approved ones alone, and ``vmwarden
release`` gives every ENI back exactly its groups.

The CLI runs in a subprocess (``python -m vmwarden.cli.main``) with ``AWS_ENDPOINT_URL`` at
moto's server and dummy credentials in its environment, and a real SQLite store. Instances
get their groups on the ENI at launch: moto reports an attached ENI's groups as the union of
its own and the instance's launch groups (``SecurityGroupIds``), which would hide isolation
(see test_aws_isolation.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.connectors.aws.ec2_estate import ami, network, tag_spec

POLICY = """\
version: 1
quarantine:
  aws: {{security_group: vmw-a1-e2e-quarantine}}
templates:
  - {{name: golden, aws_image: {golden}}}
zones:
  pci: {{networks: [pci-a, pci-b], classifications: [pci]}}
rules:
  - name: unapproved-template
    resource: vm
    severity: high
    filters: [not-approved-template]
    actions: [quarantine]
  - name: outside-zone
    resource: vm
    severity: high
    filters: [outside-zone]
    actions: [quarantine]
"""


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)  # AWS_ENDPOINT_URL and the dummy keys come from the aws_env fixture
    env["VMWARDEN_DB"] = f"sqlite:///{tmp_path / 'vmwarden.db'}"
    return subprocess.run(
        [sys.executable, "-m", "vmwarden.cli.main", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=180,
        check=False,
    )


def _launch(ec2: Any, image: str, subnets: list[tuple[str, list[str]]], name: str) -> str:
    """An instance whose ENI ``i`` is in ``subnets[i]`` with those groups."""
    first, groups = subnets[0]
    iid = ec2.run_instances(
        ImageId=image,
        MinCount=1,
        MaxCount=1,
        InstanceType="t3.micro",
        NetworkInterfaces=[{"DeviceIndex": 0, "SubnetId": first, "Groups": groups}],
        TagSpecifications=tag_spec(
            "instance", {"Name": name, "vmwarden:classification": "pci", "vmwarden:owner": "ops"}
        ),
    )["Instances"][0]["InstanceId"]
    for index, (subnet, more) in enumerate(subnets[1:], start=1):
        eni = ec2.create_network_interface(SubnetId=subnet, Groups=more)["NetworkInterface"]
        ec2.attach_network_interface(
            NetworkInterfaceId=eni["NetworkInterfaceId"], InstanceId=iid, DeviceIndex=index
        )
    return str(iid)


def _enis(ec2: Any, iid: str) -> list[dict[str, Any]]:
    found = ec2.describe_network_interfaces(
        Filters=[{"Name": "attachment.instance-id", "Values": [iid]}]
    )["NetworkInterfaces"]
    return sorted(found, key=lambda e: e["Attachment"]["DeviceIndex"])


def test_scan_enforce_quarantines_the_rogue_and_the_astray_and_release_restores_each_eni(
    ec2: Any, tmp_path: Path
) -> None:
    golden = ami(ec2, "golden")
    unvetted = ami(ec2, "someone-elses-build")
    subnets = network(
        ec2, "10.7.0.0/16", {"pci-a": "10.7.1.0/24", "pci-b": "10.7.2.0/24", "dev": "10.7.9.0/24"}
    )
    vpc = ec2.describe_subnets(SubnetIds=[subnets["pci-a"]])["Subnets"][0]["VpcId"]
    web, ssh = (
        ec2.create_security_group(GroupName=n, Description=n, VpcId=vpc)["GroupId"]
        for n in ("vmw-a1-web", "vmw-a1-ssh")
    )
    ok = _launch(ec2, golden, [(subnets["pci-a"], [web])], "vmw-a1-ok")
    ok_b = _launch(ec2, golden, [(subnets["pci-b"], [web, ssh])], "vmw-a1-ok-b")
    rogue = _launch(  # two ENIs: each one is isolated, and each gets its own groups back
        ec2, unvetted, [(subnets["pci-a"], [web, ssh]), (subnets["pci-b"], [ssh])], "vmw-a1-rogue"
    )
    astray = _launch(ec2, golden, [(subnets["dev"], [ssh])], "vmw-a1-astray")
    before = {iid: _enis(ec2, iid) for iid in (ok, ok_b, rogue, astray)}
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.format(golden=golden))

    ran = _cli(tmp_path, "scan", "-c", "aws://us-east-1", "-p", str(policy), "--enforce",
               "--format", "json")  # fmt: skip
    assert ran.returncode in (0, 1), ran.stderr
    doc = json.loads(ran.stdout)
    # the policy's rules only: whether moto's snapshots can be read for inspection (the
    # built-in "uninspectable" finding) is the EBS reader's matter, not enforcement's
    found = {
        (f["rule"], f["id"])
        for f in doc["findings"]
        if f["rule"] in ("unapproved-template", "outside-zone")
    }
    assert found == {("unapproved-template", rogue), ("outside-zone", astray)}, doc["findings"]
    assert "test-secret-do-not-log" not in ran.stdout + ran.stderr

    (quarantine,) = ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": ["vmw-a1-e2e-quarantine"]}]
    )["SecurityGroups"]  # one VPC here: one group, empty both ways
    assert quarantine["IpPermissions"] == [] and quarantine["IpPermissionsEgress"] == []
    q = {"GroupId": quarantine["GroupId"], "GroupName": "vmw-a1-e2e-quarantine"}
    for held in (rogue, astray):
        assert [e["Groups"] for e in _enis(ec2, held)] == [[q]] * len(before[held])
    for fine in (ok, ok_b):
        assert _enis(ec2, fine) == before[fine]  # approved, in zone: left alone

    again = _cli(tmp_path, "scan", "-c", "aws://us-east-1", "-p", str(policy), "--enforce",
                 "--format", "json")  # fmt: skip
    assert again.returncode in (0, 1), again.stderr  # a second sweep: quarantine holds, no error
    assert [e["Groups"] for e in _enis(ec2, rogue)] == [[q], [q]]

    for held in (rogue, astray):
        out = _cli(tmp_path, "release", held, "--reason", "rebuilt from the golden AMI")
        assert out.returncode == 0, out.stdout + out.stderr
        assert _enis(ec2, held) == before[held]  # every field of every ENI, groups in order


def test_manual_quarantine_and_release_of_an_instance_through_the_cli(
    ec2: Any, tmp_path: Path
) -> None:
    subnets = network(ec2, "10.8.0.0/16", {"app": "10.8.1.0/24"})
    vpc = ec2.describe_subnets(SubnetIds=[subnets["app"]])["Subnets"][0]["VpcId"]
    web = ec2.create_security_group(GroupName="vmw-a1-web", Description="w", VpcId=vpc)
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    iid = _launch(ec2, image, [(subnets["app"], [web["GroupId"]])], "vmw-a1-manual")
    before = _enis(ec2, iid)
    held = _cli(tmp_path, "quarantine", "vmw-a1-manual", "-c", "aws://us-east-1",
                "--network", "vmw-a1-ir-42", "--reason", "IR-42")  # fmt: skip
    assert held.returncode == 0, held.stdout + held.stderr
    assert [g["GroupName"] for e in _enis(ec2, iid) for g in e["Groups"]] == ["vmw-a1-ir-42"]
    out = _cli(tmp_path, "release", iid, "-c", "aws://us-east-1", "--reason", "IR-42 closed")
    assert out.returncode == 0, out.stdout + out.stderr
    assert _enis(ec2, iid) == before

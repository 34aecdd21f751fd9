"""AMI template identity against moto: copies of an approved AMI are approved where the
account's own private AMIs record them; public AMIs and other accounts' only when listed.

moto's ``copy_image`` records no ``SourceImageId`` and writes no "[Copied … from …]"
description, so the copies here are given the description AWS writes for them; what is
proven is how vmwarden reads and trusts the record, not that AWS writes it. moto has no
AMI deprecation either: ``DeprecationTime`` is read from an AWS-shaped answer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.connectors.aws.ec2_estate import ami, launch, network
from vmwarden.connectors.aws.ami import COPY_TAG, template_records
from vmwarden.connectors.base import open_connector
from vmwarden.engine.inspection import InspectionOptions
from vmwarden.engine.scan import Sweep, SweepOptions
from vmwarden.policy import parse_policy
from vmwarden.store import Store

POLICY = """\
version: 1
templates:
  - {{name: golden, aws_image: {golden}}}
rules:
  - {{name: unapproved, resource: vm, severity: high, filters: [not-approved-template]}}
"""


def _copy(ec2: Any, source: str, name: str, description: str) -> str:
    return str(
        ec2.copy_image(
            SourceImageId=source, SourceRegion="us-east-1", Name=name, Description=description
        )["ImageId"]
    )


def test_copies_are_followed_only_where_the_account_can_vouch_for_them(
    ec2: Any, tmp_path: Path
) -> None:
    golden = ami(ec2, "golden")
    copy = _copy(ec2, golden, "golden-copy", f"[Copied {golden} from us-east-1] golden")
    copy2 = _copy(ec2, copy, "golden-copy2", f"[Copied {copy} from us-east-1] golden-copy")
    tagged = ami(ec2, "golden-rebuilt")
    ec2.create_tags(Resources=[tagged], Tags=[{"Key": COPY_TAG, "Value": golden}])
    # ours but public: its description is as good as anyone's, so it is not believed
    published = _copy(ec2, golden, "golden-public", f"[Copied {golden} from us-east-1] golden")
    ec2.modify_image_attribute(ImageId=published, LaunchPermission={"Add": [{"Group": "all"}]})
    liar = ami(ec2, "liar")  # ours, private, claims nothing: not approved
    stock = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    subnets = network(ec2, "10.30.0.0/16", {"a": "10.30.1.0/24"})
    ids = {
        name: launch(ec2, image, subnets["a"], {"Name": name})
        for name, image in [
            ("golden", golden),
            ("copy", copy),
            ("copy2", copy2),
            ("tagged", tagged),
            ("published", published),
            ("liar", liar),
            ("stock", stock),
        ]
    }
    policy = parse_policy(POLICY.format(golden=golden))
    options = SweepOptions(inspect=InspectionOptions(enabled=False))
    with Store.open(f"sqlite:///{tmp_path / 'w.db'}") as store:
        result = Sweep(store, policy, actor="t", options=options).run(["aws://us-east-1"])
    flagged = {f.name: f.evidence for f in result.findings if f.rule == "unapproved"}
    assert set(flagged) == {"published", "liar", "stock"}, flagged
    assert flagged["published"]["public"] is True and "copied_from" not in flagged["published"]
    assert (
        flagged["stock"]["own"] is False and flagged["stock"]["owner"] != (flagged["liar"]["owner"])
    )
    vms = {vm.name: vm for vm in result.vms}
    rec = vms["copy2"].template_record
    assert rec is not None and rec.copied_from == [copy, golden]
    assert (rec.own, rec.public, rec.name) == (True, False, "golden-copy2")
    assert rec.created is not None and rec.created.tzinfo is not None
    stock_rec = vms["stock"].template_record
    assert stock_rec is not None and stock_rec.public is True and stock_rec.own is False
    # the AMI details are in the scan's JSON record of the VM
    doc = vms["copy"].to_dict()["template_record"]
    assert doc["id"] == copy and doc["copied_from"] == [golden]
    assert ids["golden"] not in flagged


def test_an_ami_aws_no_longer_describes_is_named_not_guessed(ec2: Any) -> None:
    gone = ami(ec2, "retired")
    subnets = network(ec2, "10.31.0.0/16", {"a": "10.31.1.0/24"})
    iid = launch(ec2, gone, subnets["a"], {})
    ec2.deregister_image(ImageId=gone)
    with open_connector("aws://us-east-1") as conn:
        vm = conn.lookup(iid)
    assert vm.template_id == gone and vm.template_record is not None
    assert vm.template_record.error and "does not describe" in vm.template_record.error


def test_deprecation_and_source_image_id_as_aws_returns_them() -> None:
    own = {"OwnerId": "111122223333", "_own": True, "Public": False}
    records = template_records(
        {
            "ami-0aaaaaaaaaaaaaaaa": {**own, "ImageId": "ami-0aaaaaaaaaaaaaaaa"},
            "ami-0bbbbbbbbbbbbbbbb": {
                **own,
                "ImageId": "ami-0bbbbbbbbbbbbbbbb",
                "SourceImageId": "ami-0aaaaaaaaaaaaaaaa",
                "CreationDate": "2024-05-01T12:00:00.000Z",
                "DeprecationTime": "2026-05-01T12:00:00.000Z",
            },
            "ami-0cccccccccccccccc": {  # another account's, claiming a copy: not followed
                "OwnerId": "999988887777",
                "Public": True,
                "ImageId": "ami-0cccccccccccccccc",
                "SourceImageId": "ami-0aaaaaaaaaaaaaaaa",
            },
        }
    )
    b = records["ami-0bbbbbbbbbbbbbbbb"]
    assert b.copied_from == ["ami-0aaaaaaaaaaaaaaaa"]
    assert b.deprecated_at is not None and b.deprecated_at.year == 2026
    assert b.created is not None and b.created.isoformat().startswith("2024-05-01T12:00")
    assert records["ami-0cccccccccccccccc"].copied_from == []
    assert records["ami-0cccccccccccccccc"].own is False

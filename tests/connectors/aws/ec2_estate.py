"""Builds EC2 estates in moto through real boto3 calls, as an operator's account holds them."""

from __future__ import annotations

from typing import Any


def tag_spec(kind: str, tags: dict[str, str]) -> list[dict[str, Any]]:
    return [{"ResourceType": kind, "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]


def ami(ec2: Any, name: str) -> str:
    """An AMI of this account (made from a throw-away instance, as one is in real life)."""
    base = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    iid = ec2.run_instances(ImageId=base, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    image = ec2.create_image(InstanceId=iid, Name=name)["ImageId"]
    ec2.terminate_instances(InstanceIds=[iid])
    return str(image)


def network(ec2: Any, cidr: str, subnets: dict[str, str]) -> dict[str, str]:
    """A VPC and its subnets, each tagged ``Name``: name → subnet id."""
    vpc = ec2.create_vpc(CidrBlock=cidr)["Vpc"]["VpcId"]
    out = {}
    for name, block in subnets.items():
        sub = ec2.create_subnet(
            VpcId=vpc, CidrBlock=block, TagSpecifications=tag_spec("subnet", {"Name": name})
        )
        out[name] = sub["Subnet"]["SubnetId"]
    return out


def launch(ec2: Any, image: str, subnet: str, tags: dict[str, str], **extra: Any) -> str:
    resp = ec2.run_instances(
        ImageId=image,
        MinCount=1,
        MaxCount=1,
        InstanceType="t3.micro",
        SubnetId=subnet,
        **({"TagSpecifications": tag_spec("instance", tags)} if tags else {}),
        **extra,
    )
    return str(resp["Instances"][0]["InstanceId"])

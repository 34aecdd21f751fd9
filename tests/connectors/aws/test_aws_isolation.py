"""EC2 quarantine per ENI against moto's server: every ENI of a multi-ENI, cross-VPC instance
goes into its own VPC's quarantine group, release gives each ENI back exactly its groups,
a crash between journal steps is repaired from the journal, and release refuses to undo an
admin's change made during quarantine unless told.

moto quirk that shapes these estates: moto reports an attached ENI's groups as the union of
its own and the *instance's* groups (``SecurityGroupIds`` at launch, or
``modify_instance_attribute``). Instances are therefore launched with their groups on the
ENI (``NetworkInterfaces=[{Groups: …}]``), as the console does, so that what moto reports is
the ENI's own set; an instance launched with ``SecurityGroupIds`` could not be shown isolated
in moto at all (its launch groups stay in every ENI's reported set), though AWS isolates it.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.connectors.aws.ec2_estate import tag_spec
from vmwarden.connectors.aws.connection import AwsConnector
from vmwarden.connectors.aws.isolation import QUARANTINE_TAG
from vmwarden.enforce import Quarantiner
from vmwarden.enforce.changed import ReleaseConflict
from vmwarden.errors import EnforceError
from vmwarden.model.isolation import QuarantineSpec
from vmwarden.store import Store

URI = "aws://us-east-1"
SPEC = QuarantineSpec(aws_security_group="vmw-a1-quarantine")


class Estate:
    """One instance with three ENIs: two in VPC one (two subnets), one in VPC two."""

    def __init__(self, ec2: Any) -> None:
        self.ec2 = ec2
        base = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        self.vpc1 = ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
        self.vpc2 = ec2.create_vpc(CidrBlock="10.2.0.0/16")["Vpc"]["VpcId"]
        sub = {
            name: ec2.create_subnet(
                VpcId=vpc,
                CidrBlock=cidr,
                AvailabilityZone="us-east-1a",
                TagSpecifications=tag_spec("subnet", {"Name": name}),
            )["Subnet"]["SubnetId"]
            for name, vpc, cidr in (
                ("app", self.vpc1, "10.1.1.0/24"),
                ("mgmt", self.vpc1, "10.1.2.0/24"),
                ("db", self.vpc2, "10.2.1.0/24"),
            )
        }
        self.groups = {
            name: ec2.create_security_group(GroupName=name, Description=name, VpcId=vpc)["GroupId"]
            for name, vpc in (("web", self.vpc1), ("ssh", self.vpc1), ("sql", self.vpc2))
        }
        g = self.groups
        self.vm = ec2.run_instances(
            ImageId=base,
            MinCount=1,
            MaxCount=1,
            NetworkInterfaces=[
                {"DeviceIndex": 0, "SubnetId": sub["app"], "Groups": [g["web"], g["ssh"]]}
            ],
            TagSpecifications=tag_spec("instance", {"Name": "vmw-a1-multi"}),
        )["Instances"][0]["InstanceId"]
        self.enis = [self.eni_ids()[0]]
        for index, (subnet, groups) in enumerate(
            ((sub["mgmt"], [g["ssh"]]), (sub["db"], [g["sql"]])), start=1
        ):
            eni = ec2.create_network_interface(SubnetId=subnet, Groups=groups)
            eni_id = eni["NetworkInterface"]["NetworkInterfaceId"]
            ec2.attach_network_interface(
                NetworkInterfaceId=eni_id, InstanceId=self.vm, DeviceIndex=index
            )
            self.enis.append(eni_id)

    def eni_ids(self) -> list[str]:
        return [e["NetworkInterfaceId"] for e in self.describe()]

    def describe(self) -> list[dict[str, Any]]:
        """Every ENI of the instance as AWS describes it, in device order."""
        found = self.ec2.describe_network_interfaces(
            Filters=[{"Name": "attachment.instance-id", "Values": [self.vm]}]
        )["NetworkInterfaces"]
        return sorted(found, key=lambda e: e["Attachment"]["DeviceIndex"])

    def groups_of(self) -> dict[str, list[str]]:
        return {
            e["NetworkInterfaceId"]: [g["GroupId"] for g in e["Groups"]] for e in self.describe()
        }

    def quarantine_groups(self) -> dict[str, dict[str, Any]]:
        """VPC → the quarantine group found there by name."""
        found = self.ec2.describe_security_groups(
            Filters=[{"Name": "group-name", "Values": [SPEC.aws_security_group]}]
        )["SecurityGroups"]
        return {sg["VpcId"]: sg for sg in found}


@pytest.fixture
def estate(ec2: Any) -> Estate:
    return Estate(ec2)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(f"sqlite:///{tmp_path / 'a1.db'}") as s:
        yield s


def _quarantine(store: Store, conn: AwsConnector, vm_id: str, actor: str = "tester") -> Any:
    return Quarantiner(store, actor).quarantine(
        conn, conn.lookup(vm_id), SPEC, reason="rogue", rule="r"
    )


def test_every_eni_goes_into_its_own_vpcs_quarantine_group_and_release_is_exact(
    estate: Estate, store: Store
) -> None:
    before = estate.describe()
    assert [len(e["Groups"]) for e in before] == [2, 1, 1]  # the estate is what we think
    with AwsConnector(URI) as conn:
        rec = _quarantine(store, conn, estate.vm)
        assert rec.status == "done", rec.error
        qgroups = estate.quarantine_groups()
        assert set(qgroups) == {estate.vpc1, estate.vpc2}  # one group per VPC
        for sg in qgroups.values():  # created empty (AWS's default egress rule revoked), tagged
            assert sg["IpPermissions"] == [] and sg["IpPermissionsEgress"] == []
            assert {"Key": QUARANTINE_TAG, "Value": "true"} in sg["Tags"]
        q1, q2 = qgroups[estate.vpc1]["GroupId"], qgroups[estate.vpc2]["GroupId"]
        assert estate.groups_of() == dict(zip(estate.enis, [[q1], [q1], [q2]], strict=True))
        records = {n["eni"]: n for n in rec.changes["nics"]}
        assert records[estate.enis[0]]["groups_before"] == [
            estate.groups["web"], estate.groups["ssh"]
        ]  # fmt: skip

        again = _quarantine(store, conn, estate.vm)  # idempotent: nothing to do, no new group
        assert again.status == "noop"
        assert set(estate.quarantine_groups()) == {estate.vpc1, estate.vpc2}

        released = Quarantiner(store, "admin").release(conn, estate.vm, reason="fixed")
        assert released.status == "done", released.error
    after = estate.describe()
    for was, now in zip(before, after, strict=True):  # every field of every ENI, not just groups
        assert now == was


def test_an_existing_quarantine_group_is_used_and_a_half_made_one_loses_its_egress(
    estate: Estate, store: Store
) -> None:
    ec2 = estate.ec2
    admins = ec2.create_security_group(
        GroupName=SPEC.aws_security_group, Description="admin's", VpcId=estate.vpc1
    )["GroupId"]
    ours = ec2.create_security_group(  # as a crash between create and revoke leaves it
        GroupName=SPEC.aws_security_group,
        Description="half made",
        VpcId=estate.vpc2,
        TagSpecifications=tag_spec("security-group", {QUARANTINE_TAG: "true"}),
    )["GroupId"]
    assert ec2.describe_security_groups(GroupIds=[ours])["SecurityGroups"][0][
        "IpPermissionsEgress"
    ]  # AWS (and moto) gives a new group an allow-all egress rule
    with AwsConnector(URI) as conn:
        assert _quarantine(store, conn, estate.vm).status == "done"
    groups = estate.groups_of()
    assert groups[estate.enis[0]] == [admins] and groups[estate.enis[2]] == [ours]
    by_id = {sg["GroupId"]: sg for sg in estate.quarantine_groups().values()}
    assert by_id[ours]["IpPermissionsEgress"] == []
    assert by_id[admins]["IpPermissionsEgress"] != []  # not ours: used as it is


def test_a_crash_after_the_first_eni_is_repaired_from_the_journal(
    estate: Estate, store: Store
) -> None:
    before = estate.describe()
    original = estate.groups_of()

    class Crash(Exception):
        pass

    class DiesAfterFirstEni:
        """The real connector; its ``isolate`` dies after the first journaled ENI."""

        def __init__(self, conn: AwsConnector) -> None:
            self.conn = conn

        def __getattr__(self, name: str) -> Any:
            return getattr(self.conn, name)

        def isolate(self, vm_id: str, records: Any, spec: Any, *, progress: Any,
                    on_live: Any = None) -> list[str]:  # fmt: skip
            def step(name: str) -> None:
                progress(name)
                raise Crash

            return self.conn.isolate(vm_id, records, spec, progress=step, on_live=on_live)

    with AwsConnector(URI) as conn:
        with pytest.raises(Crash):
            _quarantine(store, DiesAfterFirstEni(conn), estate.vm)  # type: ignore[arg-type]
        (entry,) = store.incomplete_actions()
        assert entry.status == "pending"
        half = estate.groups_of()
        assert half[estate.enis[0]] != original[estate.enis[0]]  # the first ENI moved ...
        assert half[estate.enis[1]] == original[estate.enis[1]]  # ... not the others
        assert [n["config"] for n in entry.changes["nics"]] == ["done", "pending", "pending"]
        assert Quarantiner(store, "repairer").resume(conn, entry).status == "done"
        assert store.incomplete_actions() == []
        assert conn.is_isolated(estate.vm, copy.deepcopy(entry.changes["nics"]), SPEC)
        released = Quarantiner(store, "admin").release(conn, estate.vm, reason="fixed")
        assert released.status == "done"
    # the originals recorded before the crash, not the half-quarantined state
    assert estate.describe() == before


def test_release_refuses_to_undo_an_admins_change_unless_told(estate: Estate, store: Store) -> None:
    ec2, web, ssh = estate.ec2, estate.groups["web"], estate.groups["ssh"]
    primary = estate.enis[0]
    with AwsConnector(URI) as conn:
        assert _quarantine(store, conn, estate.vm).status == "done"
        ec2.modify_network_interface_attribute(NetworkInterfaceId=primary, Groups=[web])
        with pytest.raises(ReleaseConflict) as refused:
            Quarantiner(store, "admin").release(conn, estate.vm, reason="fixed")
        (change,) = refused.value.changes
        assert (change.key, change.now, change.before) == (
            primary, f"groups {web}", f"groups {web}, {ssh}"
        )  # fmt: skip
        assert estate.groups_of()[primary] == [web]  # nothing touched
        rec = Quarantiner(store, "admin").release(
            conn, estate.vm, reason="fixed", keep_changes=True
        )
        assert rec.status == "done"
    groups = estate.groups_of()
    assert groups[primary] == [web]  # the admin's fix stays
    assert groups[estate.enis[1]] == [ssh] and groups[estate.enis[2]] == [estate.groups["sql"]]


def test_a_change_a_reconcile_undid_is_still_reported_and_force_restores_over_it(
    estate: Estate, store: Store
) -> None:
    ec2, sql = estate.ec2, estate.groups["sql"]
    original = estate.groups_of()
    with AwsConnector(URI) as conn:
        assert _quarantine(store, conn, estate.vm).status == "done"
        other = ec2.create_security_group(GroupName="open", Description="o", VpcId=estate.vpc2)
        ec2.modify_network_interface_attribute(
            NetworkInterfaceId=estate.enis[2], Groups=[other["GroupId"]]
        )
        assert _quarantine(store, conn, estate.vm).status == "done"  # reconcile re-isolates
        q2 = estate.quarantine_groups()[estate.vpc2]["GroupId"]
        assert estate.groups_of()[estate.enis[2]] == [q2]
        with pytest.raises(ReleaseConflict) as refused:
            Quarantiner(store, "admin").release(conn, estate.vm, reason="fixed")
        (change,) = refused.value.changes
        assert change.reisolated and change.now == f"groups {other['GroupId']}"
        rec = Quarantiner(store, "admin").release(conn, estate.vm, reason="fixed", force=True)
        assert rec.status == "done"
    assert estate.groups_of() == original
    assert original[estate.enis[2]] == [sql]


def test_an_eni_attached_during_quarantine_is_isolated_too(estate: Estate, store: Store) -> None:
    ec2 = estate.ec2
    with AwsConnector(URI) as conn:
        assert _quarantine(store, conn, estate.vm).status == "done"
        subnet = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [estate.vpc2]}])
        eni = ec2.create_network_interface(
            SubnetId=subnet["Subnets"][0]["SubnetId"], Groups=[estate.groups["sql"]]
        )["NetworkInterface"]["NetworkInterfaceId"]
        ec2.attach_network_interface(NetworkInterfaceId=eni, InstanceId=estate.vm, DeviceIndex=3)
        assert _quarantine(store, conn, estate.vm).status == "done"
        q2 = estate.quarantine_groups()[estate.vpc2]["GroupId"]
        assert estate.groups_of()[eni] == [q2]
        assert Quarantiner(store, "admin").release(conn, estate.vm, reason="ok").status == "done"
    assert estate.groups_of()[eni] == [estate.groups["sql"]]


def test_a_policy_without_an_aws_group_changes_nothing(estate: Estate, store: Store) -> None:
    before = estate.describe()
    with AwsConnector(URI) as conn:
        assert "quarantine.aws.security_group" in (
            conn.quarantine_target_problem(QuarantineSpec(network="quarantine")) or ""
        )
        assert conn.quarantine_target_problem(SPEC) is None  # created when absent
        with pytest.raises(EnforceError, match="nothing changed"):
            Quarantiner(store, "t").quarantine(
                conn, conn.lookup(estate.vm), QuarantineSpec(network="q"), reason="x", rule="r"
            )
    assert estate.describe() == before and store.incomplete_actions() == []


def test_on_live_is_called_once_for_a_running_instance(estate: Estate, store: Store) -> None:
    calls: list[int] = []
    with AwsConnector(URI) as conn:
        rec = Quarantiner(store, "gate").quarantine(
            conn, conn.lookup(estate.vm), SPEC, reason="r", rule="r",
            on_live=lambda: calls.append(1),
        )  # fmt: skip
    assert rec.status == "done" and calls == [1]


def test_a_quarantine_group_deleted_while_a_connection_holds_it_is_made_again(
    estate: Estate, store: Store
) -> None:
    # The connection keeps each VPC's quarantine group once ready (one lookup per VPC per
    # connection). moto accepts a deleted group's id silently (AWS refuses it, and the
    # connector then looks again); either way a reconcile finds the group gone by name and
    # isolates into a new one.
    ec2 = estate.ec2
    with AwsConnector(URI) as conn:
        assert _quarantine(store, conn, estate.vm).status == "done"
        assert Quarantiner(store, "a").release(conn, estate.vm, reason="ok").status == "done"
        for sg in estate.quarantine_groups().values():
            ec2.delete_security_group(GroupId=sg["GroupId"])
        _quarantine(store, conn, estate.vm)  # with what the connection had ready
        rec = _quarantine(store, conn, estate.vm)  # the reconcile: groups looked up by name
        assert rec.status == "done", rec.error
        made = estate.quarantine_groups()
        assert set(made) == {estate.vpc1, estate.vpc2}
        q1, q2 = made[estate.vpc1]["GroupId"], made[estate.vpc2]["GroupId"]
        assert estate.groups_of() == dict(zip(estate.enis, [[q1], [q1], [q2]], strict=True))


def test_an_eni_detached_during_quarantine_gets_its_groups_back_on_release(
    estate: Estate, store: Store
) -> None:
    ec2, third = estate.ec2, estate.enis[2]
    original = estate.groups_of()[third]
    with AwsConnector(URI) as conn:
        assert _quarantine(store, conn, estate.vm).status == "done"
        attachment = ec2.describe_network_interfaces(NetworkInterfaceIds=[third])[
            "NetworkInterfaces"
        ][0]["Attachment"]["AttachmentId"]
        ec2.detach_network_interface(AttachmentId=attachment)
        assert Quarantiner(store, "a").release(conn, estate.vm, reason="ok").status == "done"
    (eni,) = ec2.describe_network_interfaces(NetworkInterfaceIds=[third])["NetworkInterfaces"]
    assert "Attachment" not in eni or eni["Attachment"].get("Status") != "attached"
    assert [g["GroupId"] for g in eni["Groups"]] == original  # not left in quarantine

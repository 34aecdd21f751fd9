"""Quarantine of an EC2 instance, ENI by ENI, behind the connector contract.

Each ENI's security groups are replaced by the quarantine group (``quarantine.aws.
security_group``), looked up by name in *that ENI's* VPC: an instance whose ENIs sit in two
VPCs gets one group per VPC. Per ENI, not per instance: AWS refuses an instance-level
``groupSet`` once an instance has several ENIs, and ``modify_instance_attribute`` would touch
only the primary one. A group vmwarden creates has no ingress and no egress rule (AWS gives
every new group an allow-all egress rule: it is revoked) and is tagged ``vmwarden:quarantine``.

One record per ENI (opaque to enforcement, JSON): ``{"eni", "mac", "vpc", "groups_before",
"config"[, "group", "drift"]}`` — the group ids before quarantine in AWS's order, the one step
``config`` (named as libvirt's persistent step: an ENI's groups hold whether the instance runs
or not, so a stopped instance boots isolated, which the gate's timing reads), the quarantine
group set, and a hand change a reconcile undid (``drift``) for release to report. Every
method is idempotent: an ENI that already has the desired groups gets no call.

No boto3 import here: the connector passes its client, and ``RECORDS`` (the connection-less
record reader for scheme ``aws``) is loaded without the SDK.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from vmwarden.connectors.capabilities import register_records
from vmwarden.errors import ConnectorError
from vmwarden.model.isolation import IsolationRecord, NicChange, QuarantineSpec
from vmwarden.model.vm import NicOrigin

log = logging.getLogger(__name__)

QUARANTINE_TAG = "vmwarden:quarantine"
STEP = "config"
SCOPE = "security groups"
_FINISHED = ("done", "gone")
_DESCRIPTION = "vmwarden quarantine: no ingress, no egress (created by vmwarden)"
_OPEN = ({"CidrIp": "0.0.0.0/0"},)
_OPEN6 = ({"CidrIpv6": "::/0"},)


class AwsRecords:
    """Reads EC2 isolation records for enforcement without a connection."""

    @staticmethod
    def key(record: Mapping[str, Any]) -> str:
        return str(record.get("mac") or "")

    @staticmethod
    def origin(record: Mapping[str, Any], network: str, *, live: bool) -> NicOrigin | None:
        """None: quarantine changes an ENI's groups, never its subnet, so a held ENI is
        judged where it is (zones name subnets)."""
        return None


RECORDS = register_records("aws")(AwsRecords())


def _ids(groups: Sequence[Mapping[str, Any]] | None) -> list[str]:
    return [str(g["GroupId"]) for g in groups or ()]


def _default_egress(perm: Mapping[str, Any]) -> bool:
    """AWS's allow-all egress rule a new group gets (IPv4 and, in IPv6 VPCs, IPv6)."""
    ranges = tuple({"CidrIp": r.get("CidrIp")} for r in perm.get("IpRanges") or ())
    ranges6 = tuple({"CidrIpv6": r.get("CidrIpv6")} for r in perm.get("Ipv6Ranges") or ())
    return (
        str(perm.get("IpProtocol")) == "-1"
        and not perm.get("UserIdGroupPairs")
        and not perm.get("PrefixListIds")
        and ranges in ((), _OPEN)
        and ranges6 in ((), _OPEN6)
        and bool(ranges or ranges6)
    )


class AwsIsolation:
    """Mixin of ``AwsConnector``: isolation through its ``_ec2`` client and ``_call``."""

    _ec2: Any
    # (VPC, group name) → the quarantine group made ready on this connection: one
    # ``describe_security_groups`` per VPC per connection, not per quarantine (dropped when
    # a move into it fails, e.g. someone deleted the group)
    _ready: dict[tuple[str, str], str]

    def _call(self, fn: Callable[[], Any]) -> Any:  # the connector's: botocore errors mapped
        raise NotImplementedError

    # -- reading -----------------------------------------------------------------------

    def _enis(self, vm_id: str) -> dict[str, dict[str, Any]]:
        """The instance's attached ENIs (ENI id → description), in device order."""
        pages = self._call(
            lambda: list(
                self._ec2.get_paginator("describe_network_interfaces").paginate(
                    Filters=[{"Name": "attachment.instance-id", "Values": [vm_id]}]
                )
            )
        )
        enis = [e for page in pages for e in page.get("NetworkInterfaces", [])]
        enis.sort(key=lambda e: int((e.get("Attachment") or {}).get("DeviceIndex", 0)))
        return {str(e["NetworkInterfaceId"]): e for e in enis}

    def _recorded(self, vm_id: str, records: list[IsolationRecord]) -> dict[str, dict[str, Any]]:
        """The attached ENIs and every recorded one detached since that still exists: release
        gives a detached ENI its groups back too (it still carries the quarantine group)."""
        current = self._enis(vm_id)
        missing = [str(n["eni"]) for n in records if n["eni"] not in current]
        if missing:
            found = self._call(
                lambda: self._ec2.describe_network_interfaces(
                    Filters=[{"Name": "network-interface-id", "Values": missing}]
                )
            )
            for eni in found.get("NetworkInterfaces", []):
                current[str(eni["NetworkInterfaceId"])] = eni
        return current

    def _group_named(self, vpc: str, name: str) -> dict[str, Any] | None:
        found = self._call(
            lambda: self._ec2.describe_security_groups(
                Filters=[
                    {"Name": "vpc-id", "Values": [vpc]},
                    {"Name": "group-name", "Values": [name]},
                ]
            )
        ).get("SecurityGroups", [])
        return found[0] if found else None

    def _groups_of(self, spec: QuarantineSpec, vpcs: set[str]) -> dict[str, str]:
        """VPC → the quarantine group's id there, for the VPCs that have one (no create).
        What it finds replaces what this connection had ready (a group deleted or made
        again since is looked up afresh when isolating)."""
        out = {}
        ready = self._ready_groups()
        for vpc in sorted(vpcs):
            group = self._group_named(vpc, spec.aws_security_group)
            key = (vpc, spec.aws_security_group)
            if group is None or ready.get(key) != str(group["GroupId"]):
                ready.pop(key, None)
            if group is not None:
                out[vpc] = str(group["GroupId"])
        return out

    def _ready_groups(self) -> dict[tuple[str, str], str]:
        return self.__dict__.setdefault("_ready", {})  # type: ignore[no-any-return]

    def _ensure_group(self, vpc: str, name: str) -> str:
        """The quarantine group of ``vpc``, created empty and tagged when absent. A group of
        ours still holding AWS's default egress rule (a crash between create and revoke)
        loses it; a group someone else made under that name is used as it is."""
        ready = self._ready_groups()
        if (vpc, name) in ready:
            return str(ready[(vpc, name)])
        group = self._group_named(vpc, name)
        if group is None:
            made = self._call(
                lambda: self._ec2.create_security_group(
                    GroupName=name,
                    Description=_DESCRIPTION,
                    VpcId=vpc,
                    TagSpecifications=[
                        {
                            "ResourceType": "security-group",
                            "Tags": [{"Key": QUARANTINE_TAG, "Value": "true"}],
                        }
                    ],
                )
            )
            group = self._call(
                lambda: self._ec2.describe_security_groups(GroupIds=[made["GroupId"]])
            )["SecurityGroups"][0]
        gid = str(group["GroupId"])
        ours = any(t.get("Key") == QUARANTINE_TAG for t in group.get("Tags") or ())
        default = [p for p in group.get("IpPermissionsEgress") or () if _default_egress(p)]
        if ours and default:
            self._call(
                lambda: self._ec2.revoke_security_group_egress(GroupId=gid, IpPermissions=default)
            )
        elif not ours and (group.get("IpPermissions") or group.get("IpPermissionsEgress")):
            log.warning("quarantine group %s (%s) in %s has rules: used as it is", name, gid, vpc)
        ready[(vpc, name)] = gid
        return gid

    def _set_groups(self, eni: str, groups: list[str]) -> str:
        try:
            self._call(
                lambda: self._ec2.modify_network_interface_attribute(
                    NetworkInterfaceId=eni, Groups=groups
                )
            )
        except ConnectorError as exc:
            return f"failed: {exc}"
        return "done"

    # -- the contract ------------------------------------------------------------------

    def quarantine_target_problem(self, spec: QuarantineSpec) -> str | None:
        """EC2 isolates into ``quarantine.aws.security_group``, created per VPC when absent:
        only a policy that names none is a problem."""
        if not spec.aws_security_group:
            return "the policy names no quarantine.aws.security_group for EC2"
        return None

    def isolation_records(self, vm_id: str) -> list[IsolationRecord]:
        """One record per attached ENI as it is now (its original), its step still to do."""
        return [_record(e) for e in self._enis(vm_id).values()]

    def isolate(
        self,
        vm_id: str,
        records: list[IsolationRecord],
        spec: QuarantineSpec,
        *,
        progress: Callable[[str], None],
        on_live: Callable[[], None] | None = None,
    ) -> list[str]:
        """Move every unfinished ENI into its VPC's quarantine group; what remains unfinished.
        ``on_live``: called once an ENI of a running instance has been moved."""
        if not spec.aws_security_group:
            raise ConnectorError(self.quarantine_target_problem(spec) or "no quarantine group")
        current = self._enis(vm_id)
        live = on_live is not None and self._runs(vm_id)
        groups: dict[str, str] = {}
        for nic in records:
            if nic[STEP] in _FINISHED:
                continue
            eni = current.get(nic["eni"])
            if eni is None:
                nic[STEP] = "gone"
            else:
                vpc = str(eni["VpcId"])
                try:
                    if vpc not in groups:
                        groups[vpc] = self._ensure_group(vpc, spec.aws_security_group)
                except ConnectorError as exc:
                    nic[STEP] = f"failed: {exc}"
                else:
                    nic["group"] = groups[vpc]
                    if _ids(eni.get("Groups")) == [groups[vpc]]:
                        nic[STEP] = "done"
                    else:
                        nic[STEP] = self._set_groups(nic["eni"], [groups[vpc]])
                        if nic[STEP] != "done":  # look the group up again next time
                            self._ready_groups().pop((vpc, spec.aws_security_group), None)
                        if nic[STEP] == "done" and live and on_live is not None:
                            on_live()
                            live = False
            progress(STEP)
        return _unfinished(records)

    def _runs(self, vm_id: str) -> bool:
        found = self._call(lambda: self._ec2.describe_instances(InstanceIds=[vm_id]))
        for reservation in found.get("Reservations", []):
            for inst in reservation.get("Instances", []):
                return str((inst.get("State") or {}).get("Name")) in ("pending", "running")
        return False

    def is_isolated(self, vm_id: str, records: list[IsolationRecord], spec: QuarantineSpec) -> bool:
        """Whether every ENI still has only its VPC's quarantine group. A drifted ENI is
        marked pending (its hand change kept for release to report) and an ENI attached
        since is added with its original: ``isolate`` then re-applies only those."""
        current = self._enis(vm_id)
        intact = True
        known = {n["eni"] for n in records}
        for eni_id, eni in current.items():
            if eni_id not in known:
                records.append(_record(eni))
                intact = False
        quarantine = self._groups_of(spec, {str(e["VpcId"]) for e in current.values()})
        for nic in records:
            eni = current.get(nic["eni"])
            if eni is None:
                continue
            now = _ids(eni.get("Groups"))
            target = quarantine.get(str(eni["VpcId"]))
            if target is None or now != [target]:
                nic[STEP] = "pending"
                intact = False
                _keep_drift(nic, now, target)
        return intact

    def changes_since(
        self, vm_id: str, records: list[IsolationRecord], spec: QuarantineSpec
    ) -> list[NicChange]:
        """Every ENI whose groups someone changed during quarantine, for people."""
        current = self._recorded(vm_id, records)
        out = []
        for nic in records:
            eni = current.get(nic["eni"])
            before = list(nic["groups_before"])
            target = [nic["group"]] if nic.get("group") else []
            if eni is not None and _is_change(_ids(eni.get("Groups")), before, target):
                now, again = _ids(eni.get("Groups")), False
            elif nic.get("drift") is not None:
                now, again = list(nic["drift"]), True
            else:
                continue
            out.append(
                NicChange(
                    nic["eni"], SCOPE, _describe(now), _describe(target), _describe(before), again
                )
            )
        return out

    def restore_plan(
        self,
        vm_id: str,
        records: list[IsolationRecord],
        spec: QuarantineSpec,
        changes: list[NicChange],
        *,
        keep_changes: bool,
    ) -> list[IsolationRecord]:
        """One release record per ENI; with ``keep_changes`` the groups someone set during
        quarantine stay instead of the originals (their change is the fix)."""
        keep: dict[str, list[str]] = {}
        if keep_changes and changes:
            current = self._recorded(vm_id, records)
            for nic in records:
                eni = current.get(nic["eni"])
                target = [nic["group"]] if nic.get("group") else []
                if eni is not None:
                    now = _ids(eni.get("Groups"))
                    if _is_change(now, list(nic["groups_before"]), target):
                        keep[nic["eni"]] = now
        return [
            {
                "eni": n["eni"],
                "mac": n.get("mac"),
                STEP: "pending",
                **({"keep": keep[n["eni"]]} if n["eni"] in keep else {}),
            }
            for n in records
        ]

    def restore(
        self,
        vm_id: str,
        records: list[IsolationRecord],
        plan: list[IsolationRecord],
        *,
        progress: Callable[[str], None],
    ) -> list[str]:
        """Give every ENI back its recorded groups, in their order (or the plan's kept ones)."""
        originals = {n["eni"]: n for n in records}
        current = self._recorded(vm_id, records)
        for nic in plan:
            if nic[STEP] in _FINISHED:
                continue
            eni = current.get(nic["eni"])
            desired = list(nic.get("keep") or originals[nic["eni"]]["groups_before"])
            if eni is None:
                nic[STEP] = "gone"
            elif _ids(eni.get("Groups")) == desired or not desired:
                nic[STEP] = "done"  # an ENI always has a group: none recorded, none to set
            else:
                nic[STEP] = self._set_groups(nic["eni"], desired)
            progress(STEP)
        return _unfinished(plan)


def _record(eni: Mapping[str, Any]) -> IsolationRecord:
    return {
        "eni": str(eni["NetworkInterfaceId"]),
        "mac": str(eni.get("MacAddress") or "").lower(),
        "vpc": str(eni.get("VpcId") or ""),
        "groups_before": _ids(eni.get("Groups")),
        STEP: "pending",
    }


def _unfinished(records: list[IsolationRecord]) -> list[str]:
    return [f"{n['eni']} {SCOPE}: {n[STEP]}" for n in records if n[STEP] not in _FINISHED]


def _is_change(now: list[str], before: list[str], target: list[str]) -> bool:
    """Neither the original groups nor what quarantine set (order aside)."""
    return set(now) != set(before) and set(now) != set(target)


def _keep_drift(nic: IsolationRecord, now: list[str], target: str | None) -> None:
    """Remember a hand change before it is isolated again, so release reports it; one back
    to the original (a hand undo of the quarantine) forgets an earlier change."""
    if _is_change(now, list(nic["groups_before"]), [target] if target else []):
        nic["drift"] = now
    else:
        nic.pop("drift", None)


def _describe(groups: list[str]) -> str:
    return "groups " + (", ".join(groups) if groups else "(none)")

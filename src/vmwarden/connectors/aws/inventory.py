"""EC2's describe answers → neutral ``VM`` records (no boto3 import: plain dicts in).

One paginated describe per resource type per region (instances — with their ENIs —,
subnets, VPCs, security groups, volumes, the account's snapshots and AMIs), joined here by
id — never one call per instance, so 5,000 instances cost a few dozen pages, not 5,000
round trips.

Times AWS gives: ``started_at`` is LaunchTime (the last start); ``created`` the primary
ENI's attach time (eth0 is made with the instance and never detached); ``powered_off_at``
the date in a stopped instance's ``StateTransitionReason`` ("User initiated (2024-05-01
12:00:00 GMT)"). When AWS gives no date there (a stop by AWS, a hibernation), it is None:
the ``dormant`` filter then counts from vmwarden's own history and says "unknown" until it
has one -- never a guess.

Storage the way libvirt's pools are reported: the unattached EBS volumes (and the encrypted
ones) as volumes of the region's ``ebs`` pool -- unattached ones are then orphaned images;
attached ones are the instances' disks -- and every snapshot of the account whose volume is
gone and that no AMI of the account uses as one of the ``ebs-snapshots`` pool (stale:
nobody can restore it into anything that exists). Volumes are described filtered (encrypted;
unattached): an attached volume not among the encrypted ones is unencrypted. One attached
between that describe and ``describe_instances`` is then judged unencrypted for a sweep: a
finding too many, never one too few.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from vmwarden.connectors.aws.ami import describe_amis, record_for, template_records
from vmwarden.connectors.aws.ebs import volume_path
from vmwarden.connectors.aws.scan_snapshots import SCAN_TAG
from vmwarden.model.estate import Pool, Volume
from vmwarden.model.vm import VM, Disk, Layer, Nic, State, TemplateRecord, VmMeta

TAG_PREFIX = "vmwarden:"

# EC2 instance states as the neutral (libvirt-named) states operators read. ``pending`` is
# an instance booting: it runs guest code within seconds, so it is judged as running.
_STATES: dict[str, State] = {
    "pending": State.RUNNING,
    "running": State.RUNNING,
    "stopping": State.SHUTDOWN,
    "shutting-down": State.SHUTDOWN,
    "stopped": State.SHUTOFF,
}


@dataclass(slots=True)
class Describe:
    """What one region's describes returned, keyed by id."""

    instances: list[dict[str, Any]] = field(default_factory=list)
    subnets: dict[str, dict[str, Any]] = field(default_factory=dict)
    vpcs: dict[str, dict[str, Any]] = field(default_factory=dict)
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    volumes: dict[str, dict[str, Any]] = field(default_factory=dict)
    unattached: dict[str, dict[str, Any]] = field(default_factory=dict)
    snapshots: dict[str, dict[str, Any]] = field(default_factory=dict)
    amis: dict[str, TemplateRecord] = field(default_factory=dict)
    ami_snapshots: set[str] = field(default_factory=set)  # snapshots the account's AMIs use
    account: str | None = None  # the scanned account (STS), when known


_ENCRYPTED: dict[str, Any] = {"Filters": [{"Name": "encrypted", "Values": ["true"]}]}
_AVAILABLE: dict[str, Any] = {"Filters": [{"Name": "status", "Values": ["available"]}]}
_INDEXED: tuple[tuple[str, str, str, str, dict[str, Any]], ...] = (
    ("subnets", "describe_subnets", "Subnets", "SubnetId", {}),
    ("vpcs", "describe_vpcs", "Vpcs", "VpcId", {}),
    ("groups", "describe_security_groups", "SecurityGroups", "GroupId", {}),
    # only the volumes whose record adds something to what the instances already say: the
    # encrypted ones (an attached volume not among them is unencrypted) and the unattached
    # ones (orphans); on moto 5,000 unfiltered volumes cost ~5 s of the server's time
    ("volumes", "describe_volumes", "Volumes", "VolumeId", _ENCRYPTED),
    ("unattached", "describe_volumes", "Volumes", "VolumeId", _AVAILABLE),
    ("snapshots", "describe_snapshots", "Snapshots", "SnapshotId", {"OwnerIds": ["self"]}),
)
#: Instances per describe_instances page: AWS's most (moto answers everything in one page
#: otherwise, and 5,000 instances in one answer outlast botocore's 60 s read timeout).
PAGE = 1000
_STOPPED_AT = re.compile(r"\((\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}) (?:GMT|UTC)\)")


def describe_region(ec2: Any, account: str | None = None) -> Describe:
    """Run the paginated describes once each, at once, and index them.

    The other describes run in threads while ``describe_instances`` pages in this one (a
    boto3 client is thread-safe). ``describe_network_interfaces`` is not called: each
    instance record already lists its ENIs with MAC, addresses, subnet, VPC and that ENI's
    own groups; in moto with 2,000 instances it cost 2.6 s beside describe_instances' 5-8 s
    and brought nothing more for attached ENIs (unattached ones are a later slice's)."""
    out = Describe(account=account)
    with ThreadPoolExecutor(max_workers=len(_INDEXED), thread_name_prefix="ec2-describe") as ex:
        futures = {
            attr: ex.submit(_index, ec2, op, key, id_key, **_narrowed(op, kw, account))
            for attr, op, key, id_key, kw in _INDEXED
        }
        for page in ec2.get_paginator("describe_instances").paginate(
            PaginationConfig={"PageSize": PAGE}
        ):
            for reservation in page.get("Reservations", []):
                out.instances.extend(reservation.get("Instances", []))
        # the AMIs instances use are known now: the account's own and those others, by id
        used = {str(i["ImageId"]) for i in out.instances if i.get("ImageId")}
        amis = describe_amis(ec2, used)
        for attr, future in futures.items():
            setattr(out, attr, future.result())
    out.volumes |= out.unattached
    out.amis = template_records(amis)
    out.ami_snapshots = {
        str(m["Ebs"]["SnapshotId"])
        for a in amis.values()
        if a.get("_own")
        for m in a.get("BlockDeviceMappings") or []
        if (m.get("Ebs") or {}).get("SnapshotId")
    }
    return out


def _narrowed(op: str, kwargs: dict[str, Any], account: str | None) -> dict[str, Any]:
    """The account's own snapshots by ``owner-id`` too when it is known: moto ignores
    ``OwnerIds`` and would return every AMI snapshot it preloads (~1,300, 1 s of its time)."""
    if op == "describe_snapshots" and account:
        return {**kwargs, "Filters": [{"Name": "owner-id", "Values": [account]}]}
    return kwargs


def _index(ec2: Any, op: str, key: str, id_key: str, **kwargs: Any) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for page in ec2.get_paginator(op).paginate(**kwargs):
        for item in page.get(key, []):
            found[str(item[id_key])] = item
    return found


def tags_of(item: Mapping[str, Any]) -> dict[str, str]:
    """EC2's ``[{Key, Value}]`` as a dict (later duplicates win, as the console shows)."""
    return {str(t.get("Key")): str(t.get("Value", "")) for t in item.get("Tags") or []}


def meta_of(tags: Mapping[str, str]) -> VmMeta:
    """``vmwarden:owner`` … tags as the VM's metadata; a registered tag that is neither
    yes nor no is unknown (None), never guessed."""
    registered_raw = tags.get(TAG_PREFIX + "registered", "").strip().lower()
    registered = {"yes": True, "true": True, "no": False, "false": False}.get(registered_raw)
    return VmMeta(
        owner=tags.get(TAG_PREFIX + "owner") or None,
        classification=tags.get(TAG_PREFIX + "classification") or None,
        template=tags.get(TAG_PREFIX + "template") or None,
        registered=registered,
        # the tag action's own tags (connectors.aws.actions writes them so)
        tags={
            k[len(TAG_PREFIX) + 4 :]: v
            for k, v in tags.items()
            if k.startswith(TAG_PREFIX + "tag:")
        },
    )


def instance_to_vm(inst: Mapping[str, Any], d: Describe, uri: str, region: str) -> VM | None:
    """One instance as a neutral VM; None for a terminated one (it no longer exists)."""
    state_name = str((inst.get("State") or {}).get("Name", ""))
    if state_name == "terminated":
        return None
    tags = tags_of(inst)
    vm_id = str(inst["InstanceId"])
    placement = inst.get("Placement") or {}
    host_id = placement.get("HostId")
    vm = VM(
        id=vm_id,
        name=tags.get("Name") or vm_id,
        # The dedicated host when there is one; else none: the instance shares hardware
        # nobody can name, so host-based rules (co-location) do not apply to it.
        host=str(host_id) if host_id else "",
        uri=uri,
        state=_STATES.get(state_name, State.NOSTATE),
        vcpus=_vcpus(inst),
        os_type=str(inst.get("PlatformDetails") or inst.get("Platform") or "") or None,
        arch=str(inst.get("Architecture") or "") or None,
        meta=meta_of(tags),
        template_id=str(inst["ImageId"]) if inst.get("ImageId") else None,
        started_at=_aware(inst.get("LaunchTime")),
        powered_off_at=stopped_at(inst) if state_name in ("stopped", "stopping") else None,
    )
    if vm.template_id is not None:
        vm.template_record = record_for(vm.template_id, d.amis)
    enis = _enis_of(inst)
    vm.nics = [_nic(e, d) for e in enis]
    if enis:
        vm.created = _aware((enis[0].get("Attachment") or {}).get("AttachTime"))
    vm.disks = [_disk(m, d, region) for m in inst.get("BlockDeviceMappings") or []]
    return vm


def stopped_at(inst: Mapping[str, Any]) -> datetime | None:
    """When a user stopped the instance, from ``StateTransitionReason``; None when AWS
    does not say (another reason, or no date)."""
    m = _STOPPED_AT.search(str(inst.get("StateTransitionReason") or ""))
    if m is None:
        return None
    try:
        return datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return None


def _aware(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return None


def storage_pools(d: Describe, region: str) -> list[Pool]:
    """The described EBS volumes (``ebs`` pool: unattached and encrypted ones) and every
    stale snapshot (``ebs-snapshots``) of the region, as pool volumes: the sweep reports
    those no instance uses as orphaned."""
    volumes = Pool("ebs", "aws-ebs", None, True)
    for vid, vol in sorted(d.volumes.items()):
        volumes.volumes.append(
            Volume(
                name=vid,
                path=volume_path(region, vid),
                pool=volumes.name,
                format="raw",
                capacity=int(vol.get("Size") or 0) * 1024**3 or None,
                mtime=_aware(vol.get("CreateTime")),
            )
        )
    stale = Pool("ebs-snapshots", "aws-ebs-snapshot", None, True)
    account = account_of(d)
    existing = set(d.volumes) | {
        str((m.get("Ebs") or {}).get("VolumeId"))
        for i in d.instances
        for m in i.get("BlockDeviceMappings") or []
    }
    for sid, snap in sorted(d.snapshots.items()):
        tags = tags_of(snap)
        if (
            # Owners=["self"] asked for; checked again (moto ignores it), unknown: none
            account is None
            or str(snap.get("OwnerId")) != account
            or str(snap.get("VolumeId") or "") in existing
            or sid in d.ami_snapshots
            or SCAN_TAG in tags  # vmwarden's own, in flight or for the journal to delete
        ):
            continue
        stale.volumes.append(
            Volume(
                name=sid,
                path=f"ebs:{sid}",
                pool=stale.name,
                format="raw",
                capacity=int(snap.get("VolumeSize") or 0) * 1024**3 or None,
                mtime=_aware(snap.get("StartTime")),
            )
        )
    return [volumes, stale]


def account_of(d: Describe) -> str | None:
    """The scanned account's id: STS's answer, else as its VPCs and groups name their owner."""
    if d.account:
        return d.account
    for item in (*d.vpcs.values(), *d.groups.values()):
        if item.get("OwnerId"):
            return str(item["OwnerId"])
    return None


def _vcpus(inst: Mapping[str, Any]) -> int | None:
    cpu = inst.get("CpuOptions") or {}
    cores, threads = cpu.get("CoreCount"), cpu.get("ThreadsPerCore")
    return int(cores) * int(threads) if cores and threads else None


def _enis_of(inst: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The instance's ENIs in device order (eth0 first)."""
    return sorted(
        inst.get("NetworkInterfaces") or [],
        key=lambda e: int((e.get("Attachment") or {}).get("DeviceIndex", 0)),
    )


def _nic(eni: Mapping[str, Any], d: Describe) -> Nic:
    subnet_id = eni.get("SubnetId")
    subnet = d.subnets.get(str(subnet_id)) or {}
    subnet_name = tags_of(subnet).get("Name")
    addresses: list[str] = []
    for priv in eni.get("PrivateIpAddresses") or []:
        if priv.get("PrivateIpAddress"):
            addresses.append(str(priv["PrivateIpAddress"]))
        public = (priv.get("Association") or {}).get("PublicIp")
        if public:
            addresses.append(str(public))
    if not addresses and eni.get("PrivateIpAddress"):
        addresses.append(str(eni["PrivateIpAddress"]))
    return Nic(
        mac=str(eni.get("MacAddress") or "").lower() or None,
        type="eni",
        network=str(subnet_id) if subnet_id else None,
        # zones name a subnet by id or by its Name tag (``zones.*.networks``: either)
        network_aliases=[subnet_name] if subnet_name else [],
        target_dev=str(eni.get("NetworkInterfaceId") or "") or None,
        addresses=list(dict.fromkeys(addresses)),
    )


def _disk(mapping: Mapping[str, Any], d: Describe, region: str) -> Disk:
    ebs = mapping.get("Ebs") or {}
    vol_id = str(ebs.get("VolumeId") or "")
    vol = d.volumes.get(vol_id) or {}
    # read through a snapshot and the EBS direct APIs (``AwsConnector.open_disk``)
    layer = Layer(
        path=volume_path(region, vol_id), format="raw", type="volume", host=f"aws:{region}"
    )
    return Disk(
        target=str(mapping.get("DeviceName") or vol_id),
        device="disk",
        type="volume",
        encrypted=bool(vol.get("Encrypted")),
        chain=[layer],
    )

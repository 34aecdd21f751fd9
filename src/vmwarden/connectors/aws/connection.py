"""``AwsConnector``: one EC2 region of one account.

The region's inventory (``inventory``, ``lookup``, ``observe``, ``domain_state``) is read
here; per-ENI isolation comes from ``isolation.AwsIsolation``, power, snapshots and tags
from ``actions.AwsActions``. boto3 is imported only when a connection opens, so the
connector registry loads without the AWS SDK.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any

from vmwarden.connectors.aws.actions import AwsActions
from vmwarden.connectors.aws.ebs import SnapshotReader, parse_disk_path
from vmwarden.connectors.aws.inventory import (
    _index,
    describe_region,
    instance_to_vm,
    storage_pools,
    tags_of,
)
from vmwarden.connectors.aws.isolation import AwsIsolation
from vmwarden.connectors.aws.scan_snapshots import ScanSnapshots
from vmwarden.connectors.aws.uri import AwsTarget, open_client, open_ec2, parse_aws_uri
from vmwarden.connectors.aws.watch import open_aws_feed
from vmwarden.connectors.base import DiskUnavailableError, KnownDomains, register_connector
from vmwarden.errors import ConnectorError, DomainGoneError, UnreachableError
from vmwarden.model.estate import HostInventory, Network
from vmwarden.model.events import Observed
from vmwarden.model.isolation import QuarantineTarget
from vmwarden.model.ranged import RangedReader
from vmwarden.model.vm import VM, State, VmMeta

#: The class that takes scan snapshots (the tests' one seam: see ``ScanSnapshots.readable``).
SCAN_SNAPSHOTS: type[ScanSnapshots] = ScanSnapshots
#: EC2 has no push events unless an SQS queue is named (``connectors.aws.watch``).
EVENT_FEED = open_aws_feed
_PREVIEW = "not supported by the EC2 connector yet (preview: inventory and policy only)"


def _aws_error(target: AwsTarget, exc: Exception) -> ConnectorError:
    """A botocore failure as one line naming the region and AWS's error code, never the
    request (which carries signed headers)."""
    import botocore.exceptions as bex

    where = target.region + (f" (profile {target.profile})" if target.profile else "")
    if isinstance(exc, bex.NoCredentialsError | bex.PartialCredentialsError):
        return ConnectorError(
            f"no AWS credentials for {where}",
            hint="set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or ?profile=NAME",
        )
    if isinstance(exc, bex.ClientError):
        err = exc.response.get("Error", {})
        code, msg = err.get("Code", "?"), err.get("Message", "")
        return ConnectorError(f"EC2 in {where} refused: {code}: {msg}".rstrip(": "))
    if isinstance(exc, bex.EndpointConnectionError | bex.ConnectTimeoutError):
        return UnreachableError(f"EC2 in {where} unreachable: {type(exc).__name__}")
    return ConnectorError(f"EC2 in {where}: {type(exc).__name__}")


def _why_not(exc: Exception) -> str:
    """A failed scan snapshot as one line: AWS's code and message, never the request."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        err = response.get("Error") or {}
        return f"scan snapshot refused: {err.get('Code', '?')}: {err.get('Message', '')}"
    return str(exc) or type(exc).__name__


@register_connector("aws")
class AwsConnector(AwsIsolation, AwsActions):
    """One ``aws://REGION[?profile=NAME]`` connection."""

    #: ENIs move into ``quarantine.aws.security_group``, created per VPC when absent.
    quarantine_target = QuarantineTarget(
        "aws_security_group", "quarantine.aws.security_group", "security group", must_exist=False
    )
    #: every disk read goes through a snapshot of the whole volume (minutes on AWS): an
    #: event path never opens one (``engine.remote_disks``), the reconcile does
    disk_reads_copy_the_disk = True

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self._target = parse_aws_uri(uri)
        self._ec2: Any = open_ec2(self._target)
        self._region = self._target.region
        self._ebs_client: Any = None
        self._readers: dict[str, SnapshotReader] = {}
        self._scans: ScanSnapshots | None = None
        self._account_id: str | None = None
        self._prepared: dict[str, str | Exception] = {}  # volume → scan snapshot (or why not)

    @property
    def host(self) -> str:
        # The inventory's host: the region (instances carry their dedicated host, or none).
        return f"aws:{self._target.region}"

    def _call(self, fn: Callable[[], Any]) -> Any:
        import botocore.exceptions as bex

        try:
            return fn()
        except (bex.BotoCoreError, bex.ClientError) as exc:
            raise _aws_error(self._target, exc) from None

    def inventory(self, known: KnownDomains | None = None) -> HostInventory:
        """Every instance of the region (not terminated) and its subnets as networks."""
        d = self._call(lambda: describe_region(self._ec2, self._account()))
        vms = [
            vm
            for inst in d.instances
            if (vm := instance_to_vm(inst, d, self.uri, self._target.region)) is not None
        ]
        networks = [
            Network(name=sid, bridge=None, active=s.get("State", "available") == "available")
            for sid, s in sorted(d.subnets.items())
        ]
        # local=False: nothing of EC2 is a file on this machine (disks: open_disk).
        return HostInventory(
            uri=self.uri,
            host=self.host,
            vms=vms,
            networks=networks,
            pools=storage_pools(d, self._target.region),
            local=False,
        )

    def _account(self) -> str | None:
        """The account's id (``sts:GetCallerIdentity``, which no IAM policy can deny), once
        per connection; None when STS cannot say (the inventory then infers it)."""
        import botocore.exceptions as bex

        if self._account_id is None:
            try:
                sts = open_client(self._target, "sts")
                self._account_id = str(sts.get_caller_identity()["Account"])
                sts.close()
            except (bex.BotoCoreError, bex.ClientError, ConnectorError, KeyError):
                self._account_id = ""
        return self._account_id or None

    def lookup(self, vm_id_or_name: str) -> VM:
        for vm in self.inventory().vms:
            if vm_id_or_name in (vm.id, vm.name):
                return vm
        raise DomainGoneError(f"no EC2 instance {vm_id_or_name!r} in {self._target.region}")

    def observe(self, vm_id: str) -> Observed:
        return Observed(vm=self.lookup(vm_id), run=None)

    def domain_state(self, vm_id: str) -> State:
        return self.lookup(vm_id).state

    def network_exists(self, name: str) -> bool:
        """Whether a subnet of that id or ``Name`` tag exists (zones name subnets so)."""
        subnets = self._call(lambda: _index(self._ec2, "describe_subnets", "Subnets", "SubnetId"))
        return any(name in (sid, tags_of(s).get("Name")) for sid, s in subnets.items())

    def get_metadata(self, vm_id: str) -> VmMeta:
        return self.lookup(vm_id).meta

    def open_disk(self, path: str) -> RangedReader:
        """A volume's or snapshot's bytes through the EBS direct APIs (``connectors.aws.ebs``).

        ``ebs://REGION/vol-…`` (an instance's disk in the inventory) is read through a
        snapshot taken now (``scan_snapshots``: tagged, journaled, deleted by ``close``);
        ``ebs:snap-…`` reads an existing snapshot. Anything else, or another region, is
        ``DiskUnavailableError`` with the reason (never a local path)."""
        from vmwarden.connectors.aws.ebs import open_snapshot

        if path in self._readers:
            return self._readers[path]
        kind, ident = parse_disk_path(path, self._target.region)
        if kind == "snapshot":
            reader = self._call(lambda: open_snapshot(self._ec2, self._ebs(), ident, self._region))
        else:
            scans = self.scan_snapshots()
            prepared = self._prepared.pop(ident, None)
            if isinstance(prepared, Exception):
                raise DiskUnavailableError(f"EBS volume {ident}: {_why_not(prepared)}")
            taken = prepared or self._call(lambda: scans.take(ident))
            read_id = scans.readable(taken, ident)
            reader = self._call(
                lambda: open_snapshot(self._ec2, self._ebs(), read_id, self._region, path=path)
            )
        self._readers[path] = reader
        return reader

    def prepare_disks(self, paths: list[str], stable: bool = True) -> None:
        """Start the scan snapshots of every volume a sweep will read, at once (then
        ``open_disk`` of each waits for nothing more): the engine calls it before reading
        a region's disks. ``stable`` changes nothing here: an EBS volume is only readable
        through a snapshot."""
        vols = []
        for path in paths:
            try:
                kind, ident = parse_disk_path(path, self._region)
            except DiskUnavailableError:
                continue  # open_disk says why
            if kind == "volume" and path not in self._readers:
                vols.append(ident)
        if vols:
            try:
                self._prepared |= self.scan_snapshots().take_many(vols)
            except Exception as exc:  # waiting failed: every volume unknown with the reason
                self._prepared |= dict.fromkeys(vols, exc)

    def scan_snapshots(self) -> ScanSnapshots:
        """The snapshots this connection takes to read volumes (deleted by ``close``)."""
        if self._scans is None:
            self._scans = SCAN_SNAPSHOTS(self._ec2, self._region)
        return self._scans

    def _ebs(self) -> Any:
        if self._ebs_client is None:
            self._ebs_client = open_client(self._target, "ebs")
        return self._ebs_client

    def close(self) -> None:
        """Delete the scan snapshots taken (a failure stays journaled for the next run)."""
        for reader in self._readers.values():
            reader.close()
        self._readers.clear()
        if self._scans is not None:
            self._scans.release_all()
        if self._ebs_client is not None:
            self._ebs_client.close()
        self._ec2.close()

    def __enter__(self) -> AwsConnector:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

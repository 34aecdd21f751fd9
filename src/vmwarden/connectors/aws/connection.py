"""``AwsConnector``: one EC2 region of one account — inventory (preview).

This slice reads the region (``inventory``, ``lookup``, ``observe``, ``domain_state``).
Isolation (per-ENI security groups), power, snapshot and metadata writes are a later
slice: they raise a ``ConnectorError`` saying so, never half-act. boto3 is imported only
when a connection opens, so the connector registry loads without the AWS SDK.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any, NoReturn

from vmwarden.connectors.aws.inventory import describe_region, instance_to_vm
from vmwarden.connectors.aws.uri import AwsTarget, open_ec2, parse_aws_uri
from vmwarden.connectors.base import DiskUnavailableError, KnownDomains, register_connector
from vmwarden.errors import ConnectorError, DomainGoneError, UnreachableError
from vmwarden.model.estate import HostInventory, Network
from vmwarden.model.events import Observed
from vmwarden.model.isolation import IsolationRecord, NicChange, QuarantineSpec
from vmwarden.model.ranged import RangedReader
from vmwarden.model.vm import VM, State, VmMeta

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


@register_connector("aws")
class AwsConnector:
    """One ``aws://REGION[?profile=NAME]`` connection."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self._target = parse_aws_uri(uri)
        self._ec2: Any = open_ec2(self._target)

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
        d = self._call(lambda: describe_region(self._ec2))
        vms = [
            vm
            for inst in d.instances
            if (vm := instance_to_vm(inst, d, self.uri, self._target.region)) is not None
        ]
        networks = [
            Network(name=sid, bridge=None, active=s.get("State", "available") == "available")
            for sid, s in sorted(d.subnets.items())
        ]
        # local=False: nothing of EC2 is a file on this machine (disks stay unknown).
        return HostInventory(uri=self.uri, host=self.host, vms=vms, networks=networks, local=False)

    def lookup(self, vm_id_or_name: str) -> VM:
        for vm in self.inventory().vms:
            if vm_id_or_name in (vm.id, vm.name):
                return vm
        raise DomainGoneError(f"no EC2 instance {vm_id_or_name!r} in {self._target.region}")

    def observe(self, vm_id: str) -> Observed:
        return Observed(vm=self.lookup(vm_id), run=None)

    def domain_state(self, vm_id: str) -> State:
        return self.lookup(vm_id).state

    def _unsupported(self, what: str) -> NoReturn:
        raise ConnectorError(f"{what}: {_PREVIEW}")

    def quarantine_target_problem(self, spec: QuarantineSpec) -> str | None:
        self._unsupported("checking the quarantine target")

    def network_exists(self, name: str) -> bool:
        self._unsupported("quarantine target check")

    def isolation_records(self, vm_id: str) -> list[IsolationRecord]:
        self._unsupported("quarantine")

    def isolate(
        self,
        vm_id: str,
        records: list[IsolationRecord],
        spec: QuarantineSpec,
        *,
        progress: Callable[[str], None],
        on_live: Callable[[], None] | None = None,
    ) -> list[str]:
        self._unsupported("quarantine")

    def is_isolated(self, vm_id: str, records: list[IsolationRecord], spec: QuarantineSpec) -> bool:
        self._unsupported("quarantine")

    def changes_since(
        self, vm_id: str, records: list[IsolationRecord], spec: QuarantineSpec
    ) -> list[NicChange]:
        self._unsupported("quarantine")

    def restore_plan(
        self,
        vm_id: str,
        records: list[IsolationRecord],
        spec: QuarantineSpec,
        changes: list[NicChange],
        *,
        keep_changes: bool,
    ) -> list[IsolationRecord]:
        self._unsupported("release")

    def restore(
        self,
        vm_id: str,
        records: list[IsolationRecord],
        plan: list[IsolationRecord],
        *,
        progress: Callable[[str], None],
    ) -> list[str]:
        self._unsupported("release")

    def pause(self, vm_id: str) -> None:
        self._unsupported("pause")

    def resume(self, vm_id: str) -> None:
        self._unsupported("resume")

    def shutdown(self, vm_id: str) -> None:
        self._unsupported("stop")

    def destroy(self, vm_id: str) -> None:
        self._unsupported("destroy")

    def snapshot(self, vm_id: str, name: str, description: str) -> str:
        self._unsupported("snapshot")

    def get_metadata(self, vm_id: str) -> VmMeta:
        return self.lookup(vm_id).meta

    def set_metadata(self, vm_id: str, meta: VmMeta) -> None:
        self._unsupported("tag")

    def open_disk(self, path: str) -> RangedReader:
        """EBS volumes are read through snapshots and the EBS direct APIs: a later slice.
        Until then every disk is unknown with this reason (never a local path)."""
        raise DiskUnavailableError(f"EBS volume {path}: reading EBS volumes is {_PREVIEW}")

    def close(self) -> None:
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

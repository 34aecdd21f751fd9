"""Pydantic models of the policy document (docs/POLICY.md), keys exactly as written.

Every model forbids unknown keys and is strict (YAML already gives native types, so ``"30"``
for an integer is a mistake worth reporting). Filter and action lists are kept raw here: the
loader builds them through the registries so that each entry is checked against its own
``Params`` model with its own line numbers.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from vmwarden.model.isolation import QuarantineSpec

DIGEST_RE = re.compile(r"^sha256:[0-9a-fA-F]{64}$")
RESOURCES = ("vm", "image", "host")
SEVERITIES = ("info", "low", "medium", "high", "critical")


class StrictModel(BaseModel):
    """Base of every policy model and of every filter's and action's ``Params``."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class NoParams(StrictModel):
    """For filters and actions that take no parameters."""


def _digest(value: str) -> str:
    if not DIGEST_RE.match(value):
        raise ValueError(f"digest must be 'sha256:' followed by 64 hex digits, got {value!r}")
    return value.lower()


Digest = Annotated[str, AfterValidator(_digest)]
Name = Annotated[str, Field(min_length=1)]


_AMI_RE = re.compile(r"^ami-[0-9a-f]{8,17}$")


def _ami(value: str) -> str:
    if not _AMI_RE.match(value):
        raise ValueError(f"aws_image must be an AMI id such as ami-0abc1234, got {value!r}")
    return value


AmiId = Annotated[str, AfterValidator(_ami)]


class Template(StrictModel):
    """An approved template: an image file's ``digest`` or an EC2 ``aws_image`` (AMI id)."""

    name: Name
    digest: Digest | None = None
    aws_image: AmiId | None = None

    @model_validator(mode="after")
    def _one_identity(self) -> Template:
        if (self.digest is None) == (self.aws_image is None):
            raise ValueError("a template has exactly one of digest or aws_image")
        return self


class Zone(StrictModel):
    networks: list[Name] = []
    classifications: list[Name] = []


class VsphereQuarantine(StrictModel):
    portgroup: Name


class AwsQuarantine(StrictModel):
    security_group: Name


class Quarantine(StrictModel):
    """Where each platform isolates a NIC: a libvirt ``network``, a vSphere ``portgroup``,
    an EC2 ``security_group``; a policy names at least the ones its estate has."""

    network: Name | None = None
    link_down: bool = True
    vsphere: VsphereQuarantine | None = None
    aws: AwsQuarantine | None = None

    @model_validator(mode="after")
    def _somewhere(self) -> Quarantine:
        if self.network is None and self.vsphere is None and self.aws is None:
            raise ValueError(
                "quarantine needs at least one of network (libvirt), "
                "vsphere: {portgroup: NAME} or aws: {security_group: NAME}"
            )
        return self

    def spec(self) -> QuarantineSpec:
        """The neutral spec enforcement journals and connectors read their field of."""
        return QuarantineSpec(
            network=self.network or "",
            link_down=self.link_down,
            vsphere_portgroup=self.vsphere.portgroup if self.vsphere else "",
            aws_security_group=self.aws.security_group if self.aws else "",
        )


class GateDoc(StrictModel):
    deny: list[Any] = []
    hold: list[Any] = []
    unreachable: Literal["allow", "deny"] = "allow"


class RuleDoc(StrictModel):
    name: Name
    resource: Literal["vm", "image", "host"]
    severity: Literal["info", "low", "medium", "high", "critical"]
    description: str | None = None
    remediation: str | None = None
    filters: list[Any] = Field(min_length=1)
    actions: list[Any] = []


class PolicyDoc(StrictModel):
    version: int
    templates: list[Template] = []
    zones: dict[str, Zone] = {}
    quarantine: Quarantine | None = None
    gate: GateDoc = GateDoc()
    notify: list[Any] = []
    vulns: str | None = None
    rules: list[RuleDoc] = []

    @field_validator("version")
    @classmethod
    def _version(cls, value: int) -> int:
        if value != 1:
            raise ValueError(f"unsupported policy version {value} (valid: 1)")
        return value


# --- notifiers: the ``notify:`` receivers (delivered by the notify layer) -------------------


class Webhook(StrictModel):
    """POSTs each finding as JSON."""

    type: Literal["webhook"] = "webhook"
    url: Annotated[str, Field(pattern=r"^https?://")]
    headers: dict[str, str] = {}
    timeout: float = Field(default=5.0, gt=0)
    retries: int = Field(default=2, ge=0)


class Syslog(StrictModel):
    """Sends each finding to a syslog receiver, RFC 5424 or CEF."""

    type: Literal["syslog"] = "syslog"
    address: Annotated[str, Field(pattern=r"^[^\s:]+:\d+$")]
    protocol: Literal["udp", "tcp"] = "udp"
    format: Literal["rfc5424", "cef"] = "rfc5424"
    timeout: float = Field(default=3.0, gt=0)


class Smtp(StrictModel):
    """Mails findings through an SMTP relay."""

    type: Literal["smtp"] = "smtp"
    host: Name
    port: int = Field(default=25, gt=0, lt=65536)
    sender: Name = "vmwarden@localhost"
    to: list[Name] = Field(min_length=1)
    starttls: bool = False
    timeout: float = Field(default=5.0, gt=0)


class Ocsf(StrictModel):
    """Appends each finding as an OCSF JSON event (one per line) to a file."""

    type: Literal["ocsf"] = "ocsf"
    path: Name


NOTIFIERS: dict[str, type[StrictModel]] = {
    "webhook": Webhook,
    "syslog": Syslog,
    "smtp": Smtp,
    "ocsf": Ocsf,
}
Notifier = Webhook | Syslog | Smtp | Ocsf

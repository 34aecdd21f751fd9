"""The API's request and response bodies, separate from the store's tables.

Input is hostile until validated here: bounded lengths, no NUL or lone surrogates (neither
survives a database), reasons that say something, times with a time zone.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from vmwarden.store.users import NAME_PATTERN

T = TypeVar("T")


def _clean(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


Text = Annotated[str, StringConstraints(max_length=255), AfterValidator(_clean)]
Reason = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=2000),
    AfterValidator(_clean),
]
OptionalReason = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=2000), AfterValidator(_clean)
]
Role = Literal["auditor", "operator", "admin"]
TemplateName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
UserName = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]


class In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int
    #: pass as ``cursor`` for the page after this one (keyset paging); null on the last page
    next_cursor: str | None = None


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    store: str
    version: str


# -- VMs ------------------------------------------------------------------------------------


class VmSummary(BaseModel):
    id: str
    name: str
    host: str
    uri: str
    state: str
    persistent: bool | None = None
    vcpus: int | None = None
    memory_kib: int | None = None
    owner: str | None = None
    classification: str | None = None
    template: str | None = None
    registered: bool | None = None
    macs: list[str] = []
    networks: list[str] = []
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    state_since: datetime | None = None
    gone_at: datetime | None = None


class Action(BaseModel):
    """One journal entry: an action on a VM, or an operator event (no VM)."""

    id: int
    action: str
    vm_id: str | None
    vm_name: str | None
    host: str | None
    status: str
    actor: str
    reason: str | None
    rule: str | None
    changes: dict[str, Any]
    error: str | None
    created_at: datetime | None
    updated_at: datetime | None


class HistoryItem(BaseModel):
    vm_id: str
    at: datetime
    field: str
    old: str | None
    new: str | None
    source: str


class Acknowledgement(BaseModel):
    id: int
    finding_id: int
    actor: str
    reason: str
    until: datetime | None
    created_at: datetime


class FindingOut(BaseModel):
    id: int
    rule: str
    resource: str
    resource_id: str
    name: str
    host: str
    severity: str
    evidence: dict[str, Any]
    status: str
    first_seen: datetime
    last_seen: datetime
    resolved_at: datetime | None
    acknowledged: Acknowledgement | None


class ExceptionOut(BaseModel):
    id: int
    rule: str
    vm_id: str
    vm_name: str
    reason: str
    until: datetime
    status: Literal["requested", "approved", "rejected", "expired"]
    requested_by: str
    requested_at: datetime
    decided_by: str | None
    decided_at: datetime | None
    decision_reason: str | None


class VmDetail(VmSummary):
    """The VM's stored record plus what the store knows about it."""

    os_type: str | None = None
    arch: str | None = None
    disks: list[dict[str, Any]] = []
    nics: list[dict[str, Any]] = []
    meta: dict[str, Any] = {}
    guest: dict[str, Any] | None = None  # guest facts read offline; None: not inspected
    # disks whose backing root is an approved template: {disk, template, path, digest}
    cloned_from: list[dict[str, Any]] = []
    quarantine: Action | None = None  # the quarantine holding the VM, if any
    findings: list[FindingOut] = []
    history: list[HistoryItem] = []
    actions: list[Action] = []
    exceptions: list[ExceptionOut] = []


class QuarantineIn(In):
    reason: Reason


class ReleaseIn(In):
    reason: Reason = Field(description="What was fixed (required, for the audit log).")
    on_changes: Literal["refuse", "keep", "force"] = Field(
        "refuse",
        description="A NIC someone changed during quarantine: refuse (409, nothing changed, "
        "the conflict lists each change), keep the change (raising the link quarantine took "
        "down) and restore the rest, or force the pre-quarantine NICs back over it.",
    )


# -- images, templates -------------------------------------------------------------------


class ImageOut(BaseModel):
    path: str
    host: str
    format: str | None = None
    size: int | None = None
    digest: str | None = None
    backing: str | None = None
    pool: str | None = None
    attached_to: list[Any] = []
    template: str | None = None
    error: str | None = None
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    gone_at: datetime | None = None


class TemplateOut(BaseModel):
    name: str
    digest: str
    path: str | None
    fingerprint: dict[str, Any]
    approved_by: str
    approved_at: datetime


class TemplateIn(In):
    path: Annotated[str, StringConstraints(min_length=1, max_length=4096), AfterValidator(_clean)]
    name: TemplateName
    reason: OptionalReason | None = None


# -- findings, exceptions ----------------------------------------------------------------


class AcknowledgeIn(In):
    reason: Reason
    until: AwareDatetime | None = None


class ExceptionIn(In):
    rule: Annotated[str, StringConstraints(min_length=1, max_length=255), AfterValidator(_clean)]
    vm: Annotated[str, StringConstraints(min_length=1, max_length=255), AfterValidator(_clean)]
    until: AwareDatetime
    reason: Reason


class DecisionIn(In):
    reason: OptionalReason | None = None


# -- scans ---------------------------------------------------------------------------------


class ScanIn(In):
    enforce: bool = False
    reason: OptionalReason | None = None


class ScanJobOut(BaseModel):
    id: str
    status: Literal["queued", "running", "done", "failed"]
    requested_by: str
    requested_at: datetime
    uris: list[str]
    enforce: bool
    started_at: datetime | None
    finished_at: datetime | None
    summary: dict[str, Any] | None
    warnings: list[str]
    error: str | None


class ScanOut(BaseModel):
    id: int
    started_at: datetime
    finished_at: datetime | None
    uris: list[str]
    counts: dict[str, Any] | None


# -- users ---------------------------------------------------------------------------------


class UserOut(BaseModel):
    name: str
    role: str
    disabled: bool
    created_by: str
    created_at: datetime
    token_rotated_at: datetime
    token_issued_by: str = Field("", description="Who minted the current token.")
    disabled_at: datetime | None
    last_sign_in_at: datetime | None = Field(None, description="Last successful sign-in.")


class UserIn(In):
    name: UserName
    role: Role
    reason: OptionalReason | None = None


class UserTokenOut(BaseModel):
    """The user and their new token: shown this once, stored only hashed."""

    user: UserOut
    token: str


class UserChangeIn(In):
    reason: OptionalReason | None = None


# -- sign-in sessions ----------------------------------------------------------------------


class SessionOut(BaseModel):
    """A live dashboard session. ``id`` is public (a prefix of the stored hash), never the
    cookie's secret; ``current`` marks the caller's own session."""

    id: str
    user: str
    role: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    source: str | None
    current: bool = False


class SessionEndIn(In):
    reason: Reason = Field(description="Why the session is ended (required, for the audit log).")

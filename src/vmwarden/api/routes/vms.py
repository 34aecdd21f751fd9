"""VMs: the inventory, one VM's whole story, and manual quarantine and release."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query

from vmwarden.api.auth import CurrentUser, OperatorUser
from vmwarden.api.deps import StateDep, StoreDep
from vmwarden.api.routes.common import (
    Filter,
    PagingDep,
    VmKey,
    action_out,
    find_vm,
    vm_summary,
    vm_summary_fields,
)
from vmwarden.api.schemas import (
    Action,
    ExceptionOut,
    FindingOut,
    HistoryItem,
    Page,
    QuarantineIn,
    ReleaseIn,
    VmDetail,
    VmSummary,
)
from vmwarden.api.services import quarantine_record, release_record
from vmwarden.api.vmfacts import guest_of, template_clones
from vmwarden.store.exceptions import ExceptionsRepo
from vmwarden.store.pages import VM_KEY, FindingQuery, Pages, VmQuery, vm_key

router = APIRouter(prefix="/vms", tags=["vms"])
StateFilter = Literal[
    "running", "paused", "shutoff", "shutdown", "crashed", "pmsuspended", "blocked", "nostate",
    "gone",
]  # fmt: skip


@router.get("", response_model=Page[VmSummary], summary="VMs, paged and filtered")
def list_vms(
    store: StoreDep,
    _user: CurrentUser,
    paging: PagingDep,
    host: Filter = None,
    state: Annotated[StateFilter | None, Query(description="A state, or 'gone'.")] = None,
    owner: Filter = None,
    classification: Filter = None,
    q: Annotated[Filter, Query(description="Name or UUID contains.")] = None,
) -> Page[VmSummary]:
    query = VmQuery(host=host, state=state, owner=owner, classification=classification, q=q)
    after = paging.after(VM_KEY)
    items, total = Pages(store).vms(query, limit=paging.limit, offset=paging.offset, after=after)
    last = vm_key(items[-1]) if items else None
    return paging.page([vm_summary(r) for r in items], total, last)


@router.get("/{vm}", response_model=VmDetail, summary="One VM: record, guest facts, findings…")
def get_vm(vm: VmKey, store: StoreDep, state: StateDep, _user: CurrentUser) -> VmDetail:
    """``guest`` is what the last inspection read (a sweep keeps it beside the record);
    ``cloned_from`` the approved templates the disks' backing roots are."""
    record = find_vm(store, vm)
    vm_id = record["id"]
    findings, _ = Pages(store).findings(
        FindingQuery(resource="vm", resource_id=vm_id), limit=500, offset=0
    )
    active = store.active_quarantine(vm_id)
    exceptions, _ = ExceptionsRepo(store).list_exceptions(vm_id=vm_id, limit=100)
    return VmDetail(
        **vm_summary_fields(record),
        os_type=record.get("os_type"),
        arch=record.get("arch"),
        disks=record.get("disks") or [],
        nics=record.get("nics") or [],
        meta=record.get("meta") or {},
        guest=guest_of(store, record),
        cloned_from=template_clones(store, record, state.settings),
        quarantine=action_out(active) if active else None,
        findings=[FindingOut(**f) for f in findings],
        history=[HistoryItem(**h.to_dict()) for h in store.vm_history(vm_id)],
        actions=[action_out(a) for a in store.journal_entries(vm_id=vm_id, limit=100)],
        exceptions=[ExceptionOut(**e) for e in exceptions],
    )


@router.get("/{vm}/history", response_model=list[HistoryItem], summary="One VM's changes")
def vm_history(vm: VmKey, store: StoreDep, _user: CurrentUser) -> list[HistoryItem]:
    record = find_vm(store, vm)
    return [HistoryItem(**h.to_dict()) for h in store.vm_history(record["id"])]


def _live(record: dict[str, object], vm: str) -> None:
    if record.get("gone_at"):
        raise HTTPException(409, detail=f"VM {vm!r} is gone from its host since the last scan")


@router.post("/{vm}/quarantine", response_model=Action, summary="Quarantine a VM (operator)")
def quarantine(
    vm: VmKey, body: QuarantineIn, store: StoreDep, state: StateDep, user: OperatorUser
) -> Action:
    """Move every NIC to the policy's quarantine network (link down), journaled with the
    reason. A VM already quarantined is re-checked: status ``noop`` when nothing drifted."""
    record = find_vm(store, vm)
    _live(record, vm)
    return action_out(quarantine_record(state, user.name, record, body.reason))


@router.post("/{vm}/release", response_model=Action, summary="Release a VM (operator)")
def release(
    vm: VmKey, body: ReleaseIn, store: StoreDep, state: StateDep, user: OperatorUser
) -> Action:
    """Put back exactly what the quarantine changed; the reason says what was fixed. A NIC
    someone changed during quarantine is never overwritten silently: 409 listing each change,
    unless ``on_changes`` is ``keep`` or ``force``."""
    record = find_vm(store, vm)
    _live(record, vm)
    return action_out(release_record(state, user.name, record, body.reason, body.on_changes))

"""The dashboard's writes, each the same steps as its API route (the API has no service layer).

- quarantine / release: ``POST /api/vms/{vm}/quarantine|release`` (``vmwarden.api.routes.vms``):
  the VM must still exist, its host is reached through the app's connection pool (one open
  connection per URI: the test driver keeps its state in the connection), and
  :class:`~vmwarden.enforce.Quarantiner` journals who, when and why before touching the host.
- end a session: ``DELETE /api/sessions/{id}`` (:func:`vmwarden.store.session_admin.end_session`,
  the server's session limits).
- acknowledge: ``POST /api/findings/{id}/acknowledge``; exceptions: ``POST /api/exceptions``
  and ``…/{id}/approve|reject`` (the store refuses a requester deciding their own request);
  templates: ``POST /api/templates`` (only files inside ``Settings.image_dirs``, checked by
  the API's own ``open_inside``).

Input goes through the API's request schemas, so a form accepts exactly what the API
accepts. Every refusal is a :class:`~vmwarden.errors.VmwardenError` whose message and hint
the page shows; :class:`SameActorError` (segregation of duties) is the caller's to map to 403.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any

from fastapi import HTTPException
from pydantic import ValidationError

from vmwarden.api.routes.common import server_policy
from vmwarden.api.routes.exceptions import MAX_DURATION
from vmwarden.api.routes.templates import open_inside
from vmwarden.api.schemas import (
    AcknowledgeIn,
    DecisionIn,
    ExceptionIn,
    QuarantineIn,
    ReleaseIn,
    SessionEndIn,
    TemplateIn,
)
from vmwarden.api.services import quarantine_record, release_record
from vmwarden.engine.content_lineage import FINGERPRINT_KEY, sign_for_approval
from vmwarden.errors import EnforceError, StoreError, VmwardenError
from vmwarden.inspect.digest import digest_file, fingerprint
from vmwarden.model import ActionRecord
from vmwarden.store.audit import approve_template_with_reason
from vmwarden.store.base import utcnow
from vmwarden.store.exceptions import ExceptionsRepo
from vmwarden.store.session_admin import SessionInfo, end_session


class FormError(VmwardenError):
    """What the person typed cannot be used; the message says which field and why."""


def _valid(model: type[Any], **fields: Any) -> Any:
    """``model(**fields)``, or a FormError naming the first field the API would refuse."""
    try:
        return model(**fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first.get("loc", ())) or "form"
        raise FormError(f"{field}: {first.get('msg', 'invalid')}") from None


def parse_until(text: str, *, required: bool) -> datetime | None:
    """A form's date (``YYYY-MM-DD``: the end of that day, UTC) or ISO time; must be future."""
    text = text.strip()
    if not text:
        if required:
            raise FormError("until: say until when (a date)")
        return None
    try:
        if len(text) == 10:
            at = datetime.combine(date.fromisoformat(text), time(23, 59, 59), tzinfo=UTC)
        else:
            at = datetime.fromisoformat(text)
            at = at if at.tzinfo else at.replace(tzinfo=UTC)
    except ValueError:
        raise FormError(f"until: {text!r} is not a date (YYYY-MM-DD)") from None
    if at <= utcnow():
        raise FormError("until must be in the future")
    return at


def _live_vm(store: Any, vm_id: str) -> dict[str, Any]:
    record = store.get_vm(vm_id)
    if record is None:
        raise EnforceError(f"VM {vm_id} is not in the store", hint="run a scan first")
    if record.get("gone_at"):
        raise EnforceError(
            f"VM {record['name']} is gone from its host since the last scan",
            hint="nothing to change: it no longer exists there",
        )
    return record


def quarantine_vm(state: Any, actor: str, vm_id: str, reason: str) -> ActionRecord:
    """Move every NIC of ``vm_id`` to the policy's quarantine network, journaled with why."""
    body = _valid(QuarantineIn, reason=reason)
    return quarantine_record(state, actor, _live_vm(state.store, vm_id), body.reason)


def release_vm(state: Any, actor: str, vm_id: str, reason: str) -> ActionRecord:
    """Undo the quarantine holding ``vm_id``; raises a VmwardenError saying why it cannot."""
    if not reason.strip():
        raise FormError("release needs a reason", hint="say what was fixed, for the audit log")
    body = _valid(ReleaseIn, reason=reason)
    record = _live_vm(state.store, vm_id)
    if state.store.active_quarantine(record["id"]) is None:
        raise EnforceError(
            f"VM {record['name']} is not quarantined by vmwarden; nothing to release",
            hint="it may have been released already: see the audit log",
        )
    return release_record(state, actor, record, body.reason)


def acknowledge_finding(
    state: Any, actor: str, finding_id: int, reason: str, until: str
) -> dict[str, Any]:
    body = _valid(AcknowledgeIn, reason=reason, until=parse_until(until, required=False))
    ack = ExceptionsRepo(state.store).acknowledge(
        finding_id, actor=actor, reason=body.reason, until=body.until
    )
    if ack is None:
        raise StoreError(f"no finding {finding_id}", hint="a sweep may have removed it")
    return ack


def policy_rules(settings: Any) -> list[str] | None:
    """The server policy's rule names (None when the server runs without a policy)."""
    if settings.policy_path is None:
        return None
    try:
        return [r.name for r in server_policy(settings.policy_path).rules]
    except VmwardenError:
        return None


def request_exception(
    state: Any, actor: str, *, rule: str, vm: str, until: str, reason: str
) -> dict[str, Any]:
    at = parse_until(until, required=True)
    body = _valid(ExceptionIn, rule=rule.strip(), vm=vm.strip(), until=at, reason=reason)
    if body.until - utcnow() > MAX_DURATION:
        raise FormError("an exception lasts at most 366 days; ask again later")
    names = policy_rules(state.settings)
    if names is not None and body.rule not in names:
        raise FormError(f"no rule {body.rule!r} in the policy (valid: {', '.join(names)})")
    record = state.store.get_vm(body.vm)
    if record is None:
        raise FormError(f"no VM {body.vm!r} in the store", hint="use its name or UUID")
    return ExceptionsRepo(state.store).request_exception(
        body.rule, record["id"], record["name"], body.until, body.reason, actor=actor
    )


def decide_exception(
    state: Any, actor: str, exception_id: int, *, approve: bool, reason: str
) -> dict[str, Any]:
    """Approve or reject; raises SameActorError for the requester, DecidedError if decided."""
    body = _valid(DecisionIn, reason=reason)
    decided = ExceptionsRepo(state.store).decide_exception(
        exception_id, approve=approve, actor=actor, reason=body.reason or None
    )
    if decided is None:
        raise StoreError(f"no exception {exception_id}")
    return decided


def approve_template(
    state: Any, actor: str, *, name: str, path: str, reason: str
) -> dict[str, Any]:
    """Hash an image inside the server's image directories and approve it under ``name``."""
    body = _valid(TemplateIn, name=name.strip(), path=path.strip(), reason=reason or None)
    try:
        with open_inside(body.path, state.settings.image_dirs) as (handle, real):
            digest = digest_file(handle)
            fp = fingerprint(handle)
            fp[FINGERPRINT_KEY] = sign_for_approval(handle, state.settings.image_dirs)
    except HTTPException as exc:
        raise FormError(str(exc.detail)) from None
    fp["path"] = real
    approve_template_with_reason(
        state.store, body.name, digest, real, fp, actor=actor, reason=body.reason or None
    )
    (approved,) = [t for t in state.store.templates() if t["name"] == body.name]
    return approved


def end_sign_in_session(state: Any, actor: str, session_id: str, reason: str) -> SessionInfo:
    """End a live session (its cookie is refused from the next request on), journaled."""
    body = _valid(SessionEndIn, reason=reason)
    ended = end_session(
        state.store,
        session_id,
        actor=actor,
        reason=body.reason,
        limits=state.settings.session_limits,
    )
    if ended is None:
        raise StoreError(
            f"no live session {session_id}", hint="it may have ended or expired already"
        )
    return ended

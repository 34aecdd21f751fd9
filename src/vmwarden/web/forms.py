"""The dashboard's form posts: one handler per write, all through :func:`_write`.

Every post is checked in the same order: a signed-in session (else 401), the session's CSRF
token (else 403), the role (:data:`vmwarden.web.auth.ACTIONS`; else 403, so an auditor's
forged post is refused however it is made), then the write itself in
:mod:`vmwarden.web.actions`. A refusal of the input or of the state is said on the page the
person came from (a flash message, 303); a requester deciding their own exception is a 403.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Form, Path, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from vmwarden.api.deps import get_state
from vmwarden.errors import VmwardenError
from vmwarden.model import ActionRecord
from vmwarden.store.exceptions import SameActorError
from vmwarden.store.users import User
from vmwarden.web import actions
from vmwarden.web.auth import can
from vmwarden.web.http import flash, post_user, redirect, refuse

RowId = Annotated[int, Path(ge=1, le=2**62)]
FormText = Annotated[str, Form()]
REFUSED = {
    "release": "release VMs",
    "quarantine": "quarantine VMs",
    "acknowledge": "acknowledge findings",
    "request-exception": "request exceptions",
    "decide-exception": "approve or reject exceptions",
    "approve-template": "approve templates",
    "end-session": "end sign-in sessions",
}


def safe_back(text: str | None, default: str) -> str:
    """A page of this site to return to (a path, never another origin), else ``default``."""
    if not text or not text.startswith("/") or text.startswith("//") or "\\" in text:
        return default
    if any(c in text for c in "\r\n\t") or ":" in text.split("?", 1)[0]:
        return default
    return text


def _journaled(verb: str, rec: ActionRecord) -> tuple[str, str]:
    """The flash for an action on a host: done, nothing to do, or what went wrong."""
    if rec.status == "done":
        return "ok", f"{verb}d {rec.name}: journal #{rec.journal_id}."
    if rec.status == "noop":
        return "ok", f"{rec.name} was already {verb.lower()}d; nothing had drifted."
    detail = rec.error or "see the audit log"
    return "error", f"{verb} of {rec.name} is {rec.status} (journal #{rec.journal_id}): {detail}"


async def _write(
    request: Request,
    csrf_token: str,
    action: str,
    back: str,
    run: Callable[[User], tuple[str, str]],
) -> Response:
    user = await run_in_threadpool(post_user, request, csrf_token)
    if isinstance(user, Response):
        return user
    if not can(user.role, action):
        return refuse(request, user, 403, f"Your role ({user.role}) may not {REFUSED[action]}.")
    try:
        kind, message = await run_in_threadpool(run, user)
    except SameActorError as exc:
        return refuse(request, user, 403, f"{exc}. {exc.hint or ''}".strip())
    except VmwardenError as exc:
        hint = f" ({exc.hint})" if exc.hint else ""
        flash(request, "error", f"Refused: {exc}{hint}")
        return redirect(back)
    flash(request, kind, message)
    return redirect(back)


async def quarantine(
    request: Request, vm_id: str, reason: FormText = "", csrf_token: FormText = ""
) -> Response:
    def run(user: User) -> tuple[str, str]:
        rec = actions.quarantine_vm(get_state(request), user.name, vm_id, reason)
        return _journaled("Quarantine", rec)

    return await _write(request, csrf_token, "quarantine", f"/vms/{vm_id}", run)


async def release(
    request: Request, vm_id: str, reason: FormText = "", csrf_token: FormText = ""
) -> Response:
    back = "/quarantine" if request.query_params.get("from") != "vm" else f"/vms/{vm_id}"

    def run(user: User) -> tuple[str, str]:
        if not reason.strip():
            return "error", "Say what was fixed: a release needs a reason."
        rec = actions.release_vm(get_state(request), user.name, vm_id, reason)
        return _journaled("Release", rec)

    return await _write(request, csrf_token, "release", back, run)


async def acknowledge(
    request: Request,
    finding_id: RowId,
    reason: FormText = "",
    until: FormText = "",
    back: FormText = "",
    csrf_token: FormText = "",
) -> Response:
    def run(user: User) -> tuple[str, str]:
        ack = actions.acknowledge_finding(get_state(request), user.name, finding_id, reason, until)
        until_note = f" until {ack['until']:%Y-%m-%d %H:%M} UTC" if ack["until"] else ""
        return "ok", f"Finding #{finding_id} acknowledged{until_note}."

    return await _write(request, csrf_token, "acknowledge", safe_back(back, "/findings"), run)


async def request_exception(
    request: Request,
    rule: FormText = "",
    vm: FormText = "",
    until: FormText = "",
    reason: FormText = "",
    csrf_token: FormText = "",
) -> Response:
    def run(user: User) -> tuple[str, str]:
        ex = actions.request_exception(
            get_state(request), user.name, rule=rule, vm=vm, until=until, reason=reason
        )
        return "ok", (
            f"Exception #{ex['id']} requested ({ex['rule']} on {ex['vm_name']}); "
            "it takes effect once another admin approves it."
        )

    return await _write(request, csrf_token, "request-exception", "/exceptions", run)


def _decide(approve: bool) -> Callable[..., object]:
    async def decide(
        request: Request,
        exception_id: RowId,
        reason: FormText = "",
        csrf_token: FormText = "",
    ) -> Response:
        def run(user: User) -> tuple[str, str]:
            ex = actions.decide_exception(
                get_state(request), user.name, exception_id, approve=approve, reason=reason
            )
            return "ok", f"Exception #{ex['id']} {ex['status']} ({ex['rule']} on {ex['vm_name']})."

        return await _write(request, csrf_token, "decide-exception", "/exceptions", run)

    decide.__name__ = "approve_exception" if approve else "reject_exception"
    return decide


approve_exception = _decide(approve=True)
reject_exception = _decide(approve=False)


async def approve_template(
    request: Request,
    name: FormText = "",
    path: FormText = "",
    reason: FormText = "",
    csrf_token: FormText = "",
) -> Response:
    def run(user: User) -> tuple[str, str]:
        t = actions.approve_template(
            get_state(request), user.name, name=name, path=path, reason=reason
        )
        return "ok", f"Template {t['name']} approved: {t['digest'][:23]}… ({t['path']})."

    return await _write(request, csrf_token, "approve-template", "/templates", run)


async def end_session(
    request: Request, session_id: str, reason: FormText = "", csrf_token: FormText = ""
) -> Response:
    def run(user: User) -> tuple[str, str]:
        if not reason.strip():
            return "error", "Say why: ending a session needs a reason, for the audit log."
        ended = actions.end_sign_in_session(get_state(request), user.name, session_id, reason)
        own = " (your own: sign in again)" if ended.user == user.name else ""
        return "ok", f"Ended session {ended.id} of {ended.user}{own}."

    return await _write(request, csrf_token, "end-session", "/sessions", run)

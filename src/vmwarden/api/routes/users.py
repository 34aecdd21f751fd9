"""Who may use vmwarden: the caller themself, the list of users (every role reads it: access
reviews are an auditor's job), and user management (admin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path

from vmwarden.api.auth import AdminUser, CurrentUser
from vmwarden.api.deps import StoreDep
from vmwarden.api.schemas import UserChangeIn, UserIn, UserOut, UserTokenOut
from vmwarden.api.tokens import mint
from vmwarden.store.sessions import LastAdminError, SessionsRepo, disable_user
from vmwarden.store.users import NAME_PATTERN, User, UsersRepo

router = APIRouter(tags=["users"])
UserKey = Annotated[str, Path(pattern=NAME_PATTERN)]


def _out(user: User) -> UserOut:
    return UserOut(**user.to_dict())


def _existing(repo: UsersRepo, name: str) -> User:
    user = repo.get_user(name)
    if user is None:
        raise HTTPException(404, detail=f"no user {name!r}")
    return user


@router.get("/me", response_model=UserOut, summary="The caller")
def me(user: CurrentUser) -> UserOut:
    return _out(user)


@router.get("/users", response_model=list[UserOut], summary="Every user (any role; read-only)")
def list_users(store: StoreDep, _user: CurrentUser) -> list[UserOut]:
    """For access reviews: auditors read who may sign in, with which role, who made them,
    and when they last signed in. Never a token nor any part of one."""
    return [_out(u) for u in UsersRepo(store).list_users()]


@router.post("/users", response_model=UserTokenOut, status_code=201, summary="Add a user (admin)")
def add_user(body: UserIn, store: StoreDep, user: AdminUser) -> UserTokenOut:
    """The new user's token is in this response only; it is stored hashed."""
    repo = UsersRepo(store)
    if repo.get_user(body.name) is not None:
        raise HTTPException(409, detail=f"user {body.name!r} already exists")
    token, tid, token_hash = mint()
    created = repo.add_user(
        body.name, body.role, tid, token_hash, actor=user.name, reason=body.reason or None
    )
    return UserTokenOut(user=_out(created), token=token)


@router.post(
    "/users/{name}/disable",
    response_model=UserOut,
    summary="Disable a user and end their sessions (admin; never the last enabled admin)",
    responses={409: {"description": "the last enabled admin cannot be disabled"}},
)
def disable(name: UserKey, body: UserChangeIn, store: StoreDep, user: AdminUser) -> UserOut:
    _existing(UsersRepo(store), name)
    try:
        return _out(disable_user(store, name, actor=user.name, reason=body.reason or None))
    except LastAdminError as exc:
        raise HTTPException(409, detail=f"{exc}; {exc.hint}") from exc


@router.post(
    "/users/{name}/rotate", response_model=UserTokenOut, summary="New token for a user (admin)"
)
def rotate_token(
    name: UserKey, body: UserChangeIn, store: StoreDep, user: AdminUser
) -> UserTokenOut:
    """The old token (and every session made with it) stops working at once."""
    repo = UsersRepo(store)
    _existing(repo, name)
    token, tid, token_hash = mint()
    rotated = repo.rotate_token(name, tid, token_hash, actor=user.name, reason=body.reason or None)
    SessionsRepo(store).revoke_user(rotated.id)
    return UserTokenOut(user=_out(rotated), token=token)

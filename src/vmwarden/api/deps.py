"""Typed dependencies every router uses (FastAPI full-stack template style).

``StoreDep`` (alias ``SessionDep``) is the open :class:`~vmwarden.store.Store`;
``StateDep`` the app's :class:`AppState`; ``SettingsDep`` its settings. Auth dependencies
(``CurrentUser``, ``require_role``) are in :mod:`vmwarden.api.auth`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from vmwarden.api.settings import Settings
from vmwarden.api.state import AppState
from vmwarden.store import Store


def get_state(request: Request) -> AppState:
    return request.app.state.vmwarden


def get_store(request: Request) -> Store:
    return get_state(request).store


def get_settings(request: Request) -> Settings:
    return get_state(request).settings


StateDep = Annotated[AppState, Depends(get_state)]
StoreDep = Annotated[Store, Depends(get_store)]
SessionDep = StoreDep
SettingsDep = Annotated[Settings, Depends(get_settings)]

"""The approved-template catalog: list it; approve an image (admin).

The path comes from the network, so it is hostile: it must resolve (symlinks followed) to a
regular file inside one of the server's image directories (``Settings.image_dirs``), and
the file actually opened is checked again through its descriptor, so a path swapped for a
symlink in between is still refused. Nothing outside those directories is ever hashed.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fastapi import APIRouter, HTTPException

from vmwarden.api.auth import AdminUser, CurrentUser
from vmwarden.api.deps import SettingsDep, StoreDep
from vmwarden.api.schemas import TemplateIn, TemplateOut
from vmwarden.engine.content_lineage import FINGERPRINT_KEY, sign_for_approval
from vmwarden.inspect.digest import digest_file, fingerprint
from vmwarden.store.audit import approve_template_with_reason

router = APIRouter(prefix="/templates", tags=["templates"])
_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW


def _inside(path: str, roots: list[Path]) -> bool:
    return any(Path(path).is_relative_to(root) for root in roots)


@contextmanager
def open_inside(text: str, dirs: tuple[Path, ...]) -> Iterator[tuple[str, str]]:
    """(path to read the opened file by, its real path), for a file inside ``dirs``."""
    if not dirs:
        raise HTTPException(
            409, detail="this server has no image directories; start it with --image-dir DIR"
        )
    if not os.path.isabs(text):
        raise HTTPException(422, detail="path must be absolute")
    roots = [Path(os.path.realpath(d)) for d in dirs]
    outside = HTTPException(
        422, detail=f"path is not inside the image directories ({', '.join(map(str, roots))})"
    )
    real = os.path.realpath(text)
    if not _inside(real, roots):
        raise outside
    try:
        fd = os.open(real, _FLAGS)
    except FileNotFoundError:
        raise HTTPException(404, detail=f"no file {real}") from None
    except OSError as exc:
        raise HTTPException(422, detail=f"cannot open {real}: {exc.strerror}") from None
    try:
        handle = f"/proc/self/fd/{fd}"
        opened = os.readlink(handle)
        if not _inside(opened, roots):
            raise outside
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise HTTPException(422, detail=f"not a regular file: {opened}")
        yield handle, opened
    finally:
        os.close(fd)


@router.get("", response_model=list[TemplateOut], summary="The approved catalog")
def list_templates(store: StoreDep, _user: CurrentUser) -> list[TemplateOut]:
    return [TemplateOut(**t) for t in store.templates()]


@router.post(
    "", response_model=TemplateOut, status_code=201, summary="Approve a template image (admin)"
)
def approve_template(
    body: TemplateIn, store: StoreDep, settings: SettingsDep, user: AdminUser
) -> TemplateOut:
    """Record the image's digest and fingerprint under ``name`` (re-approving replaces)."""
    with open_inside(body.path, settings.image_dirs) as (handle, real):
        digest = digest_file(handle)
        fp = fingerprint(handle)
        fp[FINGERPRINT_KEY] = sign_for_approval(handle, settings.image_dirs)
    fp["path"] = real
    approve_template_with_reason(
        store, body.name, digest, real, fp, actor=user.name, reason=body.reason or None
    )
    (approved,) = [t for t in store.templates() if t["name"] == body.name]
    return TemplateOut(**approved)

"""Disk images the sweeps found (attached, backing, orphaned)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from vmwarden.api.auth import CurrentUser
from vmwarden.api.deps import StoreDep
from vmwarden.api.routes.common import Filter, PagingDep
from vmwarden.api.schemas import ImageOut, Page
from vmwarden.store.pages import IMAGE_KEY, Pages, image_key

router = APIRouter(prefix="/images", tags=["images"])


@router.get("", response_model=Page[ImageOut], summary="Images, paged and filtered")
def list_images(
    store: StoreDep,
    _user: CurrentUser,
    paging: PagingDep,
    host: Filter = None,
    q: Annotated[Filter, Query(description="Path contains.")] = None,
) -> Page[ImageOut]:
    after = paging.after(IMAGE_KEY)
    items, total = Pages(store).images(
        host=host, q=q, limit=paging.limit, offset=paging.offset, after=after
    )
    last = image_key(items[-1]) if items else None
    return paging.page([ImageOut.model_validate(i) for i in items], total, last)

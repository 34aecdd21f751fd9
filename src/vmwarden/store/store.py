"""``Store``: the one object other layers use to reach the database."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Self

from vmwarden.store import db
from vmwarden.store.catalog import CatalogRepo
from vmwarden.store.digests import DigestsRepo
from vmwarden.store.findings import FindingsRepo
from vmwarden.store.history import HistoryRepo
from vmwarden.store.images import ImagesRepo
from vmwarden.store.inventory import InventoryRepo
from vmwarden.store.journal import JournalRepo
from vmwarden.store.scans import ScansRepo

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine


class Store(
    InventoryRepo,
    HistoryRepo,
    ImagesRepo,
    DigestsRepo,
    CatalogRepo,
    FindingsRepo,
    JournalRepo,
    ScansRepo,
):
    """The vmwarden database. Open with :meth:`open`; use as a context manager.

    Example::

        with Store.open("sqlite:////var/lib/vmwarden/vmwarden.db") as store:
            delta = store.record_inventory(vms, now=now, complete_hosts={"kvm1"})
    """

    def __init__(self, engine: Engine, url: str) -> None:
        self._engine = engine
        self.url = url

    @classmethod
    def open(cls, url: str | None = None, *, busy_timeout_ms: int = db.BUSY_TIMEOUT_MS) -> Self:
        """Open (creating if needed) and migrate to the latest schema.

        ``url`` defaults to ``$VMWARDEN_DB``, else ``<user data dir>/vmwarden/vmwarden.db``.
        Raises :class:`~vmwarden.errors.StoreError` when it cannot be opened or migrated.
        """
        raw = url or db.default_url()
        engine = db.connect(raw, busy_timeout_ms=busy_timeout_ms)
        try:
            db.migrate(engine)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine, db.parse_url(raw).render_as_string(hide_password=True))

    @property
    def dialect(self) -> str:
        return self._engine.dialect.name

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

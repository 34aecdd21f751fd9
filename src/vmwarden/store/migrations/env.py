"""Alembic environment for vmwarden's store.

vmwarden runs migrations itself when a store is opened (``Store.open``), handing its own
connection over in ``config.attributes["connection"]``; no ``alembic.ini`` is needed. The
``alembic`` command line works too, given ``-x url=...`` or ``sqlalchemy.url``.

Adding a revision (change ``tables.py`` first; then review and freeze the generated file —
a migration never imports ``tables.py``)::

    python -c "from alembic import command; from vmwarden.store import Store, db
    Store.open('sqlite:////tmp/rev.db').close()  # a database at the current head
    cfg = db.alembic_config(); cfg.set_main_option('sqlalchemy.url', 'sqlite:////tmp/rev.db')
    command.revision(cfg, 'what changed', rev_id='0003', autogenerate=True)"

``tests/store/test_store_open.py`` fails while ``tables.py`` and the migrations disagree.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from vmwarden.store.tables import full_metadata

config = context.config
target_metadata = full_metadata()


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise RuntimeError("no database URL: pass -x url=... or set sqlalchemy.url")
    return url


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite cannot ALTER most things; batch mode copies the table
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_engine(_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        _run(connection)
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()

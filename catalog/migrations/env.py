"""Alembic environment: runs on the connection `catalog.db.upgrade` hands it."""

from alembic import context
from sqlalchemy import Connection, create_engine

from catalog.tables import Base

config = context.config
target_metadata = Base.metadata


def run_migrations() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    # `alembic` on the command line, for developers writing a new revision.
    url = config.get_main_option("sqlalchemy.url") or "sqlite:///catalog.db"
    with create_engine(url).begin() as conn:
        _run(conn)


def _run(connection: Connection) -> None:
    # render_as_batch: SQLite can only ALTER through table copies.
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


run_migrations()

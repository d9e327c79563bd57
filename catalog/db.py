"""Opening the catalog database: SQLite settings and Alembic upgrades."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker
from schemas.errors import AlmanacError

MIGRATIONS = Path(__file__).parent / "migrations"
BUSY_TIMEOUT_MS = 30_000


class CatalogError(AlmanacError):
    """A catalog problem the user can act on; the message says what."""


class SchemaTooNewError(CatalogError):
    pass


def make_engine(url: str) -> Engine:
    engine = create_engine(url)

    @event.listens_for(engine, "connect")
    def _sqlite_settings(dbapi_conn, _record):  # noqa: ANN001 - DB-API types
        cur = dbapi_conn.cursor()
        # WAL lets the TUI and HTTP server read while a cron run writes.
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    return engine


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def check_schema(engine: Engine) -> None:
    """Refuse a database that a newer Almanac wrote, before anything touches it."""
    current = current_revision(engine)
    if current is None:
        return
    script = ScriptDirectory.from_config(alembic_config())
    if _known(script, current):
        return
    raise SchemaTooNewError(
        f"the catalog database has schema revision {current!r}, which this version of "
        f"Almanac does not know (newest known: {script.get_current_head()!r}); "
        "it was written by a newer Almanac: upgrade Almanac to use it"
    )


def _known(script: ScriptDirectory, revision: str) -> bool:
    return any(r.revision == revision for r in script.walk_revisions())


def upgrade(engine: Engine, revision: str = "head") -> None:
    check_schema(engine)
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


class Catalog:
    """An open catalog: one engine and one session factory per process."""

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = url
        self.engine = make_engine(url)
        if migrate:
            upgrade(self.engine)
        else:
            check_schema(self.engine)
            if current_revision(self.engine) != head_revision():
                raise CatalogError(
                    "the catalog is not initialized or is out of date: run `almanac init`"
                )
        self.sessions: sessionmaker[Session] = sessionmaker(self.engine, expire_on_commit=False)

    @classmethod
    def at(cls, path: Path, *, migrate: bool = True) -> "Catalog":
        path.parent.mkdir(parents=True, exist_ok=True)
        return cls(f"sqlite:///{path}", migrate=migrate)

    def close(self) -> None:
        self.engine.dispose()

"""Opening the catalog database: SQLite settings, Alembic upgrades, and `open_catalog`,
the one way the CLI, the HTTP server and the TUI open a catalog file."""

from __future__ import annotations

from pathlib import Path
from sqlite3 import Connection as SQLiteConnection
from urllib.parse import quote

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import URL, Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

from schemas.errors import AlmanacError

MIGRATIONS = Path(__file__).parent / "migrations"
BUSY_TIMEOUT_MS = 30_000


class CatalogError(AlmanacError):
    """A catalog problem the user can act on; the message says what."""


class SchemaTooNewError(CatalogError):
    pass


class CatalogMissingError(CatalogError):
    """No catalog file where one must already be (a reader never creates one)."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"no catalog at {path}: run `almanac init` first")
        self.path = path


def make_engine(url: str | URL, *, readonly: bool = False,
                cache_kib: int | None = None) -> Engine:
    engine = create_engine(url)

    @event.listens_for(engine, "connect")
    def _sqlite_settings(dbapi_conn: SQLiteConnection, _record: ConnectionPoolEntry) -> None:
        cur = dbapi_conn.cursor()
        # WAL lets the TUI and HTTP server read while a cron run writes. It is kept in the
        # file: writers set it, and a read-only connection could not (it would be a write).
        if not readonly:
            cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA synchronous=NORMAL")
        if cache_kib is not None:
            cur.execute(f"PRAGMA cache_size=-{int(cache_kib)}")
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
    """An open catalog: one engine and one session factory per process. Opened by
    `open_catalog` (or `Catalog.at`, the same thing for a writer)."""

    def __init__(self, url: str | URL, *, migrate: bool = True, readonly: bool = False,
                 cache_kib: int | None = None) -> None:
        self.url = url
        self.engine = make_engine(url, readonly=readonly, cache_kib=cache_kib)
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
    def at(cls, path: Path, *, migrate: bool = True) -> Catalog:
        return open_catalog(path, migrate=migrate)

    def close(self) -> None:
        self.engine.dispose()


def open_catalog(path: Path, *, readonly: bool = False, migrate: bool | None = None,
                 cache_kib: int | None = None) -> Catalog:
    """The catalog database at `path`, opened one of three ways:

    - by default (writers: the CLI, runs), created if missing and upgraded to the
      newest schema;
    - `migrate=False`: as it is, refused unless it exists at the newest schema;
    - `readonly=True` (readers: the TUI, the HTTP server), as with `migrate=False`,
      through SQLite's `mode=ro`, so the reader can neither write nor take the write
      lock a scheduled run needs; in WAL mode it sees the last committed state.

    Raises CatalogMissingError when the file must exist and does not (nothing is
    created then), SchemaTooNewError for a catalog a newer Almanac wrote, and
    CatalogError for one `almanac init` must bring up to date. `cache_kib` sets
    SQLite's page cache per connection."""
    path = Path(path)
    if migrate is None:
        migrate = not readonly
    if readonly and migrate:
        raise ValueError("a read-only catalog cannot be migrated")
    if not migrate and not path.is_file():
        raise CatalogMissingError(path)
    # URL.create, not a URL string: a `?` or `#` in a directory name stays in the path.
    if readonly:
        url = URL.create("sqlite", database=f"file:{quote(str(path))}",
                         query={"mode": "ro", "uri": "true"})
        return Catalog(url, migrate=False, readonly=True, cache_kib=cache_kib)
    path.parent.mkdir(parents=True, exist_ok=True)
    return Catalog(URL.create("sqlite", database=str(path)), migrate=migrate,
                   cache_kib=cache_kib)

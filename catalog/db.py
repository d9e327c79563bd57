"""Opening the catalog database: SQLite settings, Alembic upgrades, and `open_catalog`,
the one way the CLI, the HTTP server and the TUI open a catalog file.

Alembic loads only when a catalog is not at the newest schema: a catalog already there
(every open but the first after an upgrade) is recognised by one read of its
`alembic_version` row against the revision the migration files name as the newest,
which keeps Alembic's few hundred milliseconds of imports out of every command."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from sqlite3 import Connection as SQLiteConnection
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote

from sqlalchemy import URL, Engine, ExceptionContext, create_engine, event, make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

from catalog.errors import CatalogError, CatalogUnusableError, unusable
from catalog.plain import MIGRATIONS, newest_revision

if TYPE_CHECKING:  # Alembic loads only to migrate or to judge an unknown revision
    from alembic.config import Config
    from alembic.script import ScriptDirectory

BUSY_TIMEOUT_MS = 30_000


class SchemaTooNewError(CatalogError):
    pass


def _read_only_to_open(path: str, readonly: bool, exc: CatalogUnusableError) -> CatalogUnusableError:
    """A catalog that cannot be opened for lack of write access, whatever the command goes
    on to do: the message names what needed to write, and where."""
    file = Path(path)
    if not os.access(file.parent, os.W_OK):
        why = (f"its directory {file.parent} is read-only here, and SQLite must make "
               f"{file.name}-wal and {file.name}-shm beside it (WAL mode) even to read it")
    elif readonly:
        why = f"SQLite cannot make {file.name}-shm beside it (WAL mode), needed even to read it"
    else:
        why = ("it is read-only here, and opening it takes the write lock to check and "
               "upgrade its schema, even for a command that only reads")
    return CatalogUnusableError(f"catalog {path}: cannot be opened: {why}; make it and its "
                                f"directory writable by this user ({exc.detail})")


class CatalogMissingError(CatalogError):
    """No catalog file where one must already be (a reader never creates one)."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"no catalog at {path}: run `almanac init` first")
        self.path = path


def _file_of(url: str | URL) -> str:
    where = make_url(url).database or ""
    if where.startswith("file:"):  # a read-only URI
        where = unquote(where.removeprefix("file:"))
    return where


def make_engine(url: str | URL, *, readonly: bool = False,
                cache_kib: int | None = None) -> Engine:
    engine = create_engine(url)
    where = _file_of(url)

    @event.listens_for(engine, "connect")
    def _sqlite_settings(dbapi_conn: SQLiteConnection, _record: ConnectionPoolEntry) -> None:
        cur = dbapi_conn.cursor()
        # First: two processes creating the file at once (concurrent `almanac init`) wait
        # for each other instead of failing.
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        # WAL lets the TUI and HTTP server read while a cron run writes. It is kept in the
        # file: writers set it, and a read-only connection could not (it would be a write).
        if not readonly:
            cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        if cache_kib is not None:
            cur.execute(f"PRAGMA cache_size=-{int(cache_kib)}")
        cur.close()

    @event.listens_for(engine, "handle_error")
    def _unusable(context: ExceptionContext) -> None:
        # A damaged, unreadable or read-only file is the user's to fix: one line, not a
        # traceback (an IntegrityError or a bad statement stays a bug).
        error = context.original_exception
        if isinstance(error, sqlite3.OperationalError) or type(error) is sqlite3.DatabaseError:
            raise unusable(where, error) from error

    return engine


def alembic_config() -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def _script() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    head = _script().get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The catalog's schema revision, read with plain SQL (None: not migrated yet)."""
    with engine.connect() as conn:
        if conn.exec_driver_sql("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                                "AND name = 'alembic_version'").first() is None:
            return None
        rows = conn.exec_driver_sql("SELECT version_num FROM alembic_version").all()
    if len(rows) > 1:  # branches Almanac never makes: Alembic says what to do
        from alembic.runtime.migration import MigrationContext

        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    return rows[0][0] if rows else None


def _at_head(engine: Engine) -> bool:
    head = newest_revision()
    return head is not None and current_revision(engine) == head


def check_schema(engine: Engine) -> None:
    """Refuse a database that a newer Almanac wrote, before anything touches it."""
    current = current_revision(engine)
    if current is None or current == newest_revision():
        return
    script = _script()
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
    from alembic import command

    check_schema(engine)
    cfg = alembic_config()
    with engine.begin() as conn:
        # The write lock first: two processes upgrading at once (concurrent `almanac
        # init`) take turns, and the second finds the work done.
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


class Catalog:
    """An open catalog: one engine and one session factory per process. Opened by
    `open_catalog` (or `Catalog.at`, the same thing for a writer)."""

    def __init__(self, url: str | URL, *, migrate: bool = True, readonly: bool = False,
                 cache_kib: int | None = None) -> None:
        self.url = url
        self.engine = make_engine(url, readonly=readonly, cache_kib=cache_kib)
        try:
            self._open(migrate)
        except CatalogUnusableError as exc:
            self.engine.dispose()
            if "readonly" in exc.detail.lower():
                raise _read_only_to_open(_file_of(url), readonly, exc) from None
            raise
        self.sessions: sessionmaker[Session] = sessionmaker(self.engine, expire_on_commit=False)

    def _open(self, migrate: bool) -> None:
        if _at_head(self.engine):
            pass  # the usual case, decided without Alembic
        elif migrate:
            upgrade(self.engine)
        else:
            check_schema(self.engine)
            if current_revision(self.engine) != head_revision():
                raise CatalogError(
                    "the catalog is not initialized or is out of date: run `almanac init`"
                )

    @contextmanager
    def writing(self) -> Iterator[Session]:
        """A unit of work that reads, then writes: the write lock is taken first (BEGIN
        IMMEDIATE), so two processes adding the same model take turns instead of both
        inserting it; committed at the end, rolled back on an error."""
        with self.sessions.begin() as session:
            session.connection().exec_driver_sql("BEGIN IMMEDIATE")
            yield session

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
        if path.exists():
            raise CatalogUnusableError(f"catalog {path}: it is not a file (a directory?)")
        raise CatalogMissingError(path)
    # URL.create, not a URL string: a `?` or `#` in a directory name stays in the path.
    if readonly:
        url = URL.create("sqlite", database=f"file:{quote(str(path))}",
                         query={"mode": "ro", "uri": "true"})
        return Catalog(url, migrate=False, readonly=True, cache_kib=cache_kib)
    path.parent.mkdir(parents=True, exist_ok=True)
    return Catalog(URL.create("sqlite", database=str(path)), migrate=migrate,
                   cache_kib=cache_kib)

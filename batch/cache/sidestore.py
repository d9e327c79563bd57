"""The SQLite files beside the shards: how each is opened, written and read, and how
SQLite's failures become one line a person can act on. The one place in `batch/`
that connects to SQLite: the prediction index (`index.db`, batch.cache.index), the
scores (`scores.db`, batch.score.store) and the chains' lineage (`lineage.db`,
batch.data.lineage) are `SideStore`s, each naming its file, its format, its tables
and its error.

Two ways in: `open(root)`, read-write, creating `root`, the file and its tables (WAL,
so readers never wait for a writer) or upgrading an earlier format; and
`open_readonly(root)`, which can never write nor take the write lock a writer needs,
and is None while no writer has created the file. A file in a newer format is
refused, never rewritten. SQLite's errors that say something about the file or the
disk (damaged, unreadable, read-only for a writer, busy past the wait, full) leave as
the store's `UnavailableError` (exit 1, HTTP 503), or `DiskFullError`; any other is
our bug and stays one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Self

from batch.cache.errors import DiskFullError, SideStoreError

BUSY_TIMEOUT_S = 30
# SQLite's errors that say something about the file (or the disk), not about the SQL.
FILE_STATES = ("SQLITE_NOTADB", "SQLITE_CORRUPT", "SQLITE_READONLY", "SQLITE_CANTOPEN",
               "SQLITE_PERM", "SQLITE_AUTH", "SQLITE_IOERR", "SQLITE_BUSY", "SQLITE_LOCKED",
               "SQLITE_FULL")


def connect(target: str | Path, *, uri: bool = False) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), shareable between
    threads by a caller that serialises its calls, waiting for a busy file."""
    db = sqlite3.connect(target, uri=uri, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                         check_same_thread=False)
    db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_S * 1000}")
    return db


class SideStore:
    """One connection to a SQLite side store. Subclasses name the file and what it holds;
    they speak SQL through `_all`, `_execute` and `transaction`, which translate the
    file's failures. Not locked: a caller sharing one between threads serialises."""

    FILE: ClassVar[str]  # its name under the predictions directory
    FORMAT: ClassVar[int]  # `PRAGMA user_version` of the tables below
    SCHEMA: ClassVar[str] = ""  # its tables (CREATE ... IF NOT EXISTS)
    WHAT: ClassVar[str]  # how a message names it
    ERROR: ClassVar[type[SideStoreError]]  # what its failures raise
    # What to do when the file itself is bad (not a database, damaged).
    DAMAGED_HINT: ClassVar[str] = "move it aside"

    def __init__(self, db: sqlite3.Connection, path: Path) -> None:
        self.db, self.path = db, path

    # -- opening ------------------------------------------------------------------------------

    @classmethod
    def open(cls, root: Path) -> Self:
        """Read-write, creating `root`, the file and its tables, or upgrading what an
        earlier version wrote."""
        root.mkdir(parents=True, exist_ok=True)
        path = root / cls.FILE
        try:
            db = connect(path)
        except sqlite3.DatabaseError as exc:
            raise cls.unusable(path, exc) from exc
        store = cls(db, path)
        try:
            with store.guard():
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                store._prepare(root)
        except BaseException:
            db.close()
            raise
        return store

    @classmethod
    def open_readonly(cls, root: Path) -> Self | None:
        """Read-only, or None while no writer has created the file. An earlier format is
        upgraded first where the store knows how (`_upgrade`, once)."""
        path = root / cls.FILE
        if not path.exists():
            return None
        for attempt in range(2):
            store = cls.readonly_at(path)
            try:
                version = store.version()
            except BaseException:
                store.close()
                raise
            if version == cls.FORMAT:
                return store
            store.close()
            if version > cls.FORMAT or attempt:
                raise cls.newer(path, version)
            cls._upgrade(root, version)
        raise AssertionError("unreachable")

    @classmethod
    def readonly_at(cls, path: Path) -> Self:
        """A read-only connection to the file at `path`, as it is."""
        try:
            return cls(connect(f"file:{path}?mode=ro", uri=True), path)
        except sqlite3.DatabaseError as exc:
            raise cls.unusable(path, exc) from exc

    def _prepare(self, root: Path) -> None:
        """On a read-write connection: create the tables (a file in a newer format is
        refused). Stores whose format has earlier versions upgrade them here."""
        version = self.version()
        if version > self.FORMAT:
            raise self.newer(self.path, version)
        self.db.executescript(self.SCHEMA)
        self.db.execute(f"PRAGMA user_version={self.FORMAT}")

    @classmethod
    def _upgrade(cls, root: Path, version: int) -> None:
        """Bring an earlier format up to date for a reader; by default there is none."""
        raise cls.ERROR(f"{root / cls.FILE}: format {version}, this Almanac reads {cls.FORMAT}")

    @classmethod
    def newer(cls, path: Path, version: int) -> SideStoreError:
        return cls.ERROR(f"{path} is format {version}; this version of Almanac reads format "
                         f"{cls.FORMAT}: upgrade Almanac")

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- speaking SQL -------------------------------------------------------------------------

    def version(self) -> int:
        return int(self._all("PRAGMA user_version")[0][0])

    @contextmanager
    def guard(self) -> Iterator[None]:
        """SQLite's errors about the file as the store's one-line errors; others (SQL of
        ours that is wrong, a constraint) stay what they are: bugs."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            if not str(getattr(exc, "sqlite_errorname", "")).startswith(FILE_STATES):
                raise
            raise self.unusable(self.path, exc) from exc

    def _all(self, query: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        with self.guard():
            return self.db.execute(query, tuple(params)).fetchall()

    def _execute(self, query: str, params: Iterable[Any] = ()) -> None:
        with self.guard():
            self.db.execute(query, tuple(params))

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction, taken at once (`IMMEDIATE`: a reader never blocks it,
        and two writers queue instead of failing half-way)."""
        with self.guard():
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """One read transaction: the queries inside see one committed state even while a
        writer commits (WAL: this never blocks it)."""
        with self.guard():
            self.db.execute("BEGIN")
            try:
                yield
            finally:
                self.db.execute("ROLLBACK")  # nothing to keep

    # -- failures -----------------------------------------------------------------------------

    @classmethod
    def unusable(cls, path: Path, exc: sqlite3.Error) -> SideStoreError | DiskFullError:
        """One line for a file SQLite cannot use: what is wrong, and what to do."""
        name = getattr(exc, "sqlite_errorname", "") or ""
        if name.startswith("SQLITE_FULL"):
            return DiskFullError(f"no space left on the device holding {path} ({exc}): free "
                                 "some space and run again; what was written before is kept")
        damaged = name.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT"))
        if damaged:
            why = f"it is damaged (not a readable SQLite database): {cls.DAMAGED_HINT}"
        elif name.startswith("SQLITE_READONLY"):
            why = "it is read-only here, and this command writes to it: check its permissions"
        elif name.startswith(("SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_AUTH")):
            why = "it cannot be opened: check that it is a file this user may read and write"
        elif name.startswith("SQLITE_IOERR"):
            why = ("it cannot be read or written (an I/O error): check that it is a file this "
                   "user may read and write, on a healthy disk")
        elif name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
            why = "another process holds it locked: try again"
        else:
            why = "it cannot be used"
        found = cls.ERROR(f"{cls.WHAT} {path}: {why} ({exc})")
        found.damaged = damaged
        return found

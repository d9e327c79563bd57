"""The catalog read with the sqlite3 module alone.

A command that only reads pays for SQLAlchemy's import before its answer: more than
the answer itself (`almanac query JOB --input-id ID` reads one prediction in
milliseconds; `almanac models list` one page of models). So reads go to the catalog
file directly: `connect` opens it read-only, at the newest schema or not at all (None:
the command opens it through catalog.db, which creates or upgrades it).

- The listing plans (catalog.search, catalog.listing) are SQL over a DB-API connection:
  this module's, or the one under an ORM session (`dbapi`), one code for both. `reads`
  gives them either, and SQLite's failures as the opener's one-line errors.
- Whether a model moved to a newer revision (`revision_statuses`), answering exactly
  what `catalog.history.revision_statuses` answers (a test holds the two together), and
  the names an adapter's base goes by (`adapter_bases`, for `models list --adapters-of`).
"""

from __future__ import annotations

import functools
import re
import sqlite3
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Concatenate, ParamSpec, TypeVar
from urllib.parse import quote

from catalog.errors import UnknownModelError, unusable
from catalog.revision_status import RevisionStatus

if TYPE_CHECKING:  # SQLAlchemy loads only where a session is open already
    from sqlalchemy.orm import Session

_P = ParamSpec("_P")
_T = TypeVar("_T")

MIGRATIONS = Path(__file__).parent / "migrations"
# A revision file's own `revision = "…"` and `down_revision = "…"` lines (Alembic's
# template writes them so; catalog/migrations/script.py.mako keeps that form).
_REVISION_LINE = re.compile(r"^(revision|down_revision)\s*(?::[^=\n]*)?=\s*(.+?)\s*$", re.M)


@lru_cache(maxsize=1)
def newest_revision() -> str | None:
    """The newest schema revision as the migration files name it, read as text; None
    when they do not name exactly one (Alembic decides then). Tests hold it to Alembic's
    own head."""
    revisions, revised = set(), set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        for name, value in _REVISION_LINE.findall(path.read_text("utf-8")):
            (revisions if name == "revision" else revised).add(value.strip("'\""))
    heads = revisions - revised
    return heads.pop() if len(heads) == 1 else None


def connect(path: Path) -> sqlite3.Connection | None:
    """The catalog at `path`, read-only, if it is at the newest schema."""
    if not path.is_file():
        return None
    try:
        conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error:
        return None
    try:
        at = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    except sqlite3.Error:  # not a catalog, or damaged: nothing to say
        at = []
    if at != [(newest_revision(),)]:
        conn.close()
        return None
    return conn


def _find(conn: sqlite3.Connection, ref: str) -> tuple[int, str, str | None] | None:
    """catalog.models.find_model: by reference, then repo id or the reference in any case
    (SQLite's lower(), ASCII only), then a name in any case that only one model has."""
    for sql in ("SELECT id, ref, revision FROM models WHERE ref = ?",
                "SELECT id, ref, revision FROM models WHERE repo_id = ?1 OR lower(ref) = lower(?1)"):
        row = conn.execute(sql, (ref,)).fetchone()
        if row is not None:
            return row
    rows = conn.execute("SELECT id, ref, revision FROM models WHERE lower(name) = lower(?) "
                        "LIMIT 2", (ref,)).fetchall()
    return rows[0] if len(rows) == 1 else None


def revision_statuses(path: Path, pairs: Iterable[tuple[str, str | None]]
                      ) -> dict[tuple[str, str | None], RevisionStatus] | None:
    """catalog.history.revision_statuses over the catalog file at `path`; None when there
    is no catalog there at the newest schema."""
    conn = connect(path)
    if conn is None:
        return None
    out = {}
    try:
        for ref, revision in dict.fromkeys(pairs):
            status = out[(ref, revision)] = RevisionStatus(ref=ref, revision=revision)
            found = _find(conn, ref)
            if found is None:
                continue
            model_id, status.model_ref, status.current_revision = found
            if revision is None or status.current_revision is None:
                continue
            status.is_current = revision == status.current_revision
            if not status.is_current:
                when = conn.execute("SELECT replaced_at FROM model_revisions WHERE model_id = ? "
                                    "AND revision = ?", (model_id, revision)).fetchone()
                if when is not None and when[0] is not None:
                    status.replaced_at = datetime.fromisoformat(when[0]).replace(tzinfo=UTC)
    finally:
        conn.close()
    return out


def dbapi(db: sqlite3.Connection | Session) -> sqlite3.Connection:
    """The sqlite3 connection a read runs on: `db` itself, or the one under an ORM
    session, with what the session holds unwritten flushed first (as its own queries
    would: a read in a unit of work sees the work)."""
    if isinstance(db, sqlite3.Connection):
        return db
    db.flush()
    conn = db.connection().connection.driver_connection
    assert isinstance(conn, sqlite3.Connection)
    return conn


def reads(read: Callable[Concatenate[sqlite3.Connection, _P], _T]
          ) -> Callable[Concatenate[sqlite3.Connection | Session, _P], _T]:
    """A read over a DB-API connection made to take a connection or a session; SQLite's
    failures (damaged, unreadable, locked past waiting, a query interrupted) come out as
    catalog.db's engine gives them: a CatalogUnusableError naming the file."""

    @functools.wraps(read)
    def run(db: sqlite3.Connection | Session, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        conn = dbapi(db)
        try:
            return read(conn, *args, **kwargs)
        except sqlite3.DatabaseError as exc:
            if not isinstance(exc, sqlite3.OperationalError) and type(exc) is not sqlite3.DatabaseError:
                raise  # an IntegrityError or a bad statement stays a bug
            raise unusable(_file(conn), exc) from exc

    return run


def _file(conn: sqlite3.Connection) -> str:
    try:
        return str(conn.execute("PRAGMA database_list").fetchone()[2])
    except sqlite3.Error:
        return "(unreadable)"


def utc(text: str | None) -> datetime | None:
    """A time as SQLAlchemy's UTCDateTime stores it (catalog.tables), as it gives it back:
    aware, in UTC."""
    if text is None:
        return None
    when = datetime.fromisoformat(text)
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


@reads
def adapter_bases(conn: sqlite3.Connection, ref: str) -> list[str]:
    """The names an adapter's `base_model` may give model
    `ref` by: its reference, repo id and local path (an adapter added from a directory
    names its base by the path it was trained on). Raises UnknownModelError."""
    found = _find(conn, ref)
    if found is None:
        raise UnknownModelError(ref)
    repo_id, local_path = conn.execute("SELECT repo_id, local_path FROM models WHERE id = ?",
                                       (found[0],)).fetchone()
    return [b for b in (found[1], repo_id, local_path) if b]

"""The few catalog reads a command answering from the prediction cache makes, with the
sqlite3 module alone.

`almanac query JOB --input-id ID` reads one prediction in milliseconds; the catalog
only says whether the model that made it has moved to a newer revision since. Loading
SQLAlchemy for that would cost the command more than its answer, so these read the
catalog file directly: read-only, at the newest schema or not at all (None), and
answering exactly what `catalog.history.revision_statuses` answers (a test holds the two
together). Everything else goes through catalog.db and the ORM tables.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from urllib.parse import quote

from catalog.records import RevisionStatus

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


def _open(path: Path) -> sqlite3.Connection | None:
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
    conn = _open(path)
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

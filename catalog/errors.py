"""The catalog's errors a person can cause, with no SQLAlchemy behind them: the ORM's
opener (catalog.db) and the reads over sqlite3 alone (catalog.plain) raise the same ones."""

from __future__ import annotations

from schemas.errors import NotFoundError, UnavailableError


class CatalogError(UnavailableError):
    """The catalog cannot be used as it is (missing, written by a newer Almanac, damaged);
    the message says what to do. Exit 1 (HTTP 503)."""


class CatalogUnusableError(CatalogError):
    """The catalog file cannot be used as it is: damaged, not a database, unreadable,
    read-only for a command that writes, or locked past waiting."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail  # SQLite's own words


# SQLite's words for a file that cannot be used, and what to tell the person.
_UNUSABLE = (
    ("not a database", "it is not an SQLite database (damaged or overwritten): restore it "
                       "from a backup, or move it aside and run `almanac init` for a new one"),
    ("malformed", "it is damaged: restore it from a backup, or move it aside and run "
                  "`almanac init` for a new one"),
    ("unable to open", "it cannot be opened (a directory, or not readable by this user?)"),
    ("readonly", "it is read-only here, and this command writes to the catalog"),
    ("locked", "another process kept it locked for too long; try again"),
    ("disk i/o error", "the disk reported an I/O error"),
    ("full", "the disk is full"),
)


def unusable(path: object, exc: BaseException) -> CatalogUnusableError:
    detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    why = next((hint for words, hint in _UNUSABLE if words in detail.lower()), detail)
    return CatalogUnusableError(f"catalog {path}: {why} ({detail})", detail)


class UnknownModelError(NotFoundError, LookupError):
    def __init__(self, ref: str) -> None:
        super().__init__(f"no model {ref!r} in the catalog (see `almanac models list`)")
        self.ref = ref

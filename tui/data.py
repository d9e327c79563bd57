"""The TUI's only door to the catalog and the prediction cache.

Screens call these methods from Textual thread workers and hand the plain
records they return to widgets; no widget ever sees a session. Every call
opens a short session on a catalog opened read-only (catalog.db.open_catalog),
so the TUI can never write nor take the write lock a cron run needs, and in
WAL mode it reads the last committed state while a run writes. The catalog's
query functions answer in plain records; nothing here touches its tables.
Nothing here imports textual.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from catalog import taxonomy
from catalog.db import open_catalog
from catalog.detail import model_detail
from catalog.filters import ModelFilter
from catalog.lookup import find_model
from catalog.records import ModelRecord, RunRecord
from catalog.runs import count_runs, jobs_of_model, list_runs
from catalog.search import count_models, domain_counts, language_counts, list_models

if TYPE_CHECKING:  # the cache reader pulls in pyarrow: loaded when a screen first needs it
    from sqlalchemy.orm import Session

    from batch.query import CacheReader, CandidateSummary
    from batch.score.compare import CandidateComparison

PAGE = 50
# A bigger page cache than SQLite's 2 MB default: facet and search queries on a
# large catalog revisit the same index pages on every keystroke.
CACHE_KIB = 64 * 1024
_T = TypeVar("_T")


@dataclass(frozen=True)
class ModelQuery:
    """What the models screen shows: facets, search and size filters."""

    domain: str | None = None
    language: str | None = None
    search: str = ""
    min_params: int | None = None
    max_params: int | None = None
    fits_bytes: int | None = None

    def to_filter(self, *, offset: int = 0, limit: int | None = None) -> ModelFilter:
        """A search lists by relevance (the words in the name first, then the most
        downloaded), which a million models answer from the full-text index in order;
        without one, by name."""
        search = self.search.strip() or None
        return ModelFilter(
            domains=[self.domain] if self.domain else [],
            languages=[self.language] if self.language else [],
            search=search, sort="relevance" if search else "name",
            min_params=self.min_params, max_params=self.max_params,
            fits_bytes=self.fits_bytes, offset=offset, limit=limit,
        )

    def without(self, facet: str) -> ModelQuery:
        """The query a facet's own counts depend on (a facet ignores its own choice)."""
        return replace(self, **{facet: None})


@dataclass(frozen=True)
class ModelRow:
    ref: str
    name: str
    domains: list[str]
    languages: list[str]
    parameters: int | None
    license: str | None
    tokens_per_s: float | None


@dataclass(frozen=True)
class FacetCount:
    key: str  # a domain slug or a language code
    label: str  # the domain's description or the language's name
    count: int


@dataclass(frozen=True)
class JobUse:
    """A job whose cached predictions came from a model."""

    job: str
    rows: int


@dataclass(frozen=True)
class JobSummary:
    job: str
    rows: int
    failed: int
    shards: int


@dataclass(frozen=True)
class PredictionQuery:
    job: str
    contains: str = ""
    failed: bool | None = None
    candidate: str | None = None  # one candidate's label; None: every candidate

    def args(self) -> dict[str, Any]:
        return {"contains": self.contains or None, "failed": self.failed,
                "candidate": self.candidate}


@dataclass
class Page:
    """One page of rows and, when asked for, how many rows match in all."""

    rows: list[Any]
    offset: int
    total: int | None = None


class Data:
    """Read-only access to one Almanac home's catalog and predictions (their paths are
    given: the home's layout is the front door's), safe to call from several threads."""

    def __init__(self, catalog_db: Path, predictions: Path) -> None:
        self.predictions_root = Path(predictions)
        self.catalog = open_catalog(Path(catalog_db), readonly=True, cache_kib=CACHE_KIB)
        self._reader_lock = threading.Lock()
        self._reader: CacheReader | None = None
        # Catalog reads run by a named task, so that a newer load can stop them.
        self._task = threading.local()
        self._running: dict[str, Any] = {}  # task -> its sqlite3 connection, while it reads
        self._running_lock = threading.Lock()

    def close(self) -> None:
        self.refresh()
        self.catalog.close()

    def refresh(self) -> None:
        """Forget open prediction files: the next call sees jobs written since. (The
        catalog needs nothing: every call is a new read transaction.)"""
        with self._reader_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None

    # -- stopping superseded reads ----------------------------------------------------------

    def run_as(self, task: str, fetch: Callable[[], _T]) -> _T:
        """`fetch()` in this thread, its catalog reads named `task` for `interrupt`."""
        self._task.name = task
        try:
            return fetch()
        finally:
            self._task.name = None

    def interrupt(self, task: str) -> None:
        """Stop the catalog query `task` runs now, if any (it then raises): a newer load
        has made its answer useless, and on two cores it would slow the newer one."""
        with self._running_lock:
            conn = self._running.get(task)
        if conn is not None:
            conn.interrupt()

    @contextmanager
    def _session(self) -> Iterator[Session]:
        task = getattr(self._task, "name", None)
        with self.catalog.sessions() as s:
            if task is None:
                yield s
                return
            raw = s.connection().connection.driver_connection
            with self._running_lock:
                self._running[task] = raw
            try:
                yield s
            finally:
                with self._running_lock:
                    if self._running.get(task) is raw:
                        del self._running[task]

    # -- models ---------------------------------------------------------------------------

    def models(self, q: ModelQuery, offset: int = 0, limit: int = PAGE,
               with_total: bool = False) -> Page:
        with self._session() as s:
            records = list_models(s, q.to_filter(offset=offset, limit=limit))
            total = count_models(s, q.to_filter()) if with_total else None
        rows = [
            ModelRow(r.ref, r.name, r.domains, r.languages, r.parameters, r.license,
                     r.performance.tokens_per_s if r.performance else None)
            for r in records
        ]
        return Page(rows, offset, total)

    def count(self, q: ModelQuery) -> int:
        with self._session() as s:
            return count_models(s, q.to_filter())

    def domain_facets(self, q: ModelQuery) -> list[FacetCount]:
        """Every domain of the tree, in tree order, counted under the other filters."""
        with self._session() as s:
            counts = domain_counts(s, q.without("domain").to_filter())
        return [FacetCount(slug, taxonomy.DOMAINS.get(slug, slug), n)
                for slug, n in sorted(counts.items())]

    def language_facets(self, q: ModelQuery) -> list[FacetCount]:
        """Languages that have models under the other filters, most models first."""
        with self._session() as s:
            counts = language_counts(s, q.without("language").to_filter())
        return [FacetCount(code, taxonomy.language_name(code), n) for code, n in counts.items()]

    def model(self, ref: str) -> ModelRecord | None:
        with self.catalog.sessions() as s:
            model = find_model(s, ref)
            return model_detail(s, model) if model is not None else None

    def model_jobs(self, ref: str) -> list[JobUse]:
        """Jobs with cached predictions from this model. The runs table names the
        candidates (indexed, cheap); only those jobs' caches are then checked, so
        the cost does not grow with the whole cache."""
        with self.catalog.sessions() as s:
            candidates = jobs_of_model(s, ref)
        cached = {info.job for info in self._cache().jobs()}
        uses = []
        for job in candidates:
            if job in cached:
                rows = self._cache().job(job).count(model=ref)
                if rows:
                    uses.append(JobUse(job, rows))
        return uses

    # -- runs -----------------------------------------------------------------------------

    def runs(self, offset: int = 0, limit: int = PAGE, job: str | None = None,
             with_total: bool = False) -> Page:
        with self.catalog.sessions() as s:
            rows: list[RunRecord] = list_runs(s, job, limit, offset)
            total = count_runs(s, job) if with_total else None
        return Page(rows, offset, total)

    # -- predictions ----------------------------------------------------------------------

    def jobs(self) -> list[JobSummary]:
        return [JobSummary(i.job, i.rows, i.failed, i.shards) for i in self._cache().jobs()]

    def outdated(self, rows: list[dict[str, Any]]) -> list[str]:
        """The models of these records whose revision the catalog knows was replaced
        since they were made (catalog.history)."""
        from catalog.history import revision_statuses

        pairs = [(r["model"], r.get("revision")) for r in rows]
        with self.catalog.sessions() as s:
            statuses = revision_statuses(s, pairs)
        return sorted({ref for (ref, _), st in statuses.items() if st.is_current is False})

    def candidates(self, job: str) -> list[CandidateSummary]:
        """The job's current candidates in order ([] for a job with nothing cached)."""
        from batch.query import UnknownJobError

        try:
            return self._cache().job(job).candidates()
        except UnknownJobError:
            return []

    def predictions(self, q: PredictionQuery, offset: int = 0, limit: int = PAGE,
                    with_total: bool = False) -> Page:
        from batch.query import UnknownJobError

        args = q.args()
        try:
            view = self._cache().job(q.job)
            if q.candidate is not None and q.candidate not in view.select():
                args["candidate"] = None  # a run since has dropped it: show every candidate
            rows = view.search(**args, limit=limit, offset=offset)
            total = view.count(**args) if with_total else None
        except UnknownJobError:
            return Page([], offset, 0)
        return Page(rows, offset, total)

    def comparison(self, job: str) -> list[CandidateComparison]:
        """The job's candidates compared (batch.score.compare), best score first; [] for
        a job with nothing cached."""
        from batch.query import UnknownJobError
        from batch.score.compare import compare_job

        try:
            return compare_job(self.catalog.sessions, self._cache().job(job))
        except UnknownJobError:
            return []

    def _cache(self) -> CacheReader:
        """One shared, thread-safe reader of the cache index and shards. batch.query
        (and pyarrow) load on first use: the models screen starts without them."""
        from batch.query import CacheReader

        with self._reader_lock:
            if self._reader is None:
                self._reader = CacheReader(self.predictions_root)
            return self._reader


"""Predictions: pick a job, page through its cached records, search their outputs. A job
with several candidates shows whose each record is, and one candidate can be chosen."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Footer, Header, Input, Select, Static

from tui import format as fmt
from tui.data import JobSummary, Page, PredictionQuery
from tui.labels import own_part, shared_prefix, short_labels
from tui.screens.base import DataScreen
from tui.widgets.job_list import JobList
from tui.widgets.paged_table import PagedTable

COLUMNS = [("Input id", 14), ("Prompt", 24), ("Output", 24), ("Finish", 7)]
CANDIDATE_WIDTH = 16
WITH_CANDIDATE = [("Input id", 12), ("Candidate", CANDIDATE_WIDTH), ("Prompt", 16),
                  ("Output", 20), ("Finish", 7)]


class PredictionsScreen(DataScreen):
    AUTO_FOCUS = "#predictions"
    BINDINGS = [
        Binding("slash", "search", "Search"),
        Binding("f", "failed", "Failed"),
        Binding("m", "model", "Model"),
        Binding("c", "compare", "Compare"),
        Binding("k", "next_candidate", "Candidate", show=False),
        Binding("j", "focus('jobs')", "Jobs", show=False),
        Binding("r", "refresh", "Refresh"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.query_now: PredictionQuery | None = None
        self.shown: PredictionQuery | None = None
        self.records: dict[str, dict[str, Any]] = {}
        self.candidates: list[str] = []  # the shown job's, when it has several
        self.labels: dict[str, str] = {}  # each candidate's label as its cells show it
        # The beginning the shown prompts share (a few-shot prefix): cells show the rest.
        self.prompt_prefix = ""

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="body"):
            yield JobList(id="jobs")
            with Vertical(id="records"):
                yield Input(placeholder="search outputs  ( / )", id="contains", compact=True)
                yield Select([], prompt="All candidates  ( k )", id="candidate", compact=True)
                yield PagedTable(COLUMNS, id="predictions")
                yield Static(id="status")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.sub_title = "Predictions"
        self.query_one("#jobs").border_title = "Jobs"
        self.query_one("#predictions").loading = True
        self.query_one("#candidate").display = False  # only for jobs with several
        self.load_jobs(self.app.start_job)

    # -- loading --------------------------------------------------------------------------

    def load_jobs(self, wanted: str | None = None) -> None:
        self.load("jobs", self.data.jobs, lambda jobs: self._show_jobs(jobs, wanted))

    def _show_jobs(self, jobs: list[JobSummary], wanted: str | None) -> None:
        names = [j.job for j in jobs]
        current = self.query_now.job if self.query_now else None
        job = next((j for j in (wanted, current) if j in names), names[0] if names else None)
        self.query_one(JobList).show_jobs(jobs, job)
        if job is None:
            self.query_one("#predictions", PagedTable).loading = False
            self.query_one("#status", Static).update(
                "No cached predictions yet: `almanac run JOB.toml` writes some.")
            return
        if wanted and wanted not in names:
            self.notify(f"No cached predictions for job {wanted!r}.", severity="warning")
        self.set_query(replace(self.query_now, job=job) if self.query_now
                       else PredictionQuery(job), force=True)

    def set_query(self, q: PredictionQuery, *, force: bool = False) -> None:
        if q == self.query_now and not force:
            return
        self.query_now = q
        def fetch() -> tuple[list[Any], Page, list[str]]:
            page = self.data.predictions(q, with_total=True)
            return self.data.candidates(q.job), page, self.data.outdated(page.rows)

        self.load("page", fetch, lambda loaded: self._show(q, *loaded))

    def _show(self, q: PredictionQuery, candidates: list[Any], page: Page,
              outdated: list[str]) -> None:
        self._show_candidates(q, [c.label for c in candidates])
        table = self.query_one("#predictions", PagedTable)
        table.loading = False
        table.set_columns(WITH_CANDIDATE if self.candidates else COLUMNS)
        self.labels = short_labels(self.candidates, CANDIDATE_WIDTH)
        self.prompt_prefix = shared_prefix(r.get("prompt") for r in page.rows)
        self.records = {self._key(r): r for r in page.rows}
        table.show([self._cells(r) for r in page.rows], [self._key(r) for r in page.rows],
                   page.total)
        self.shown = q
        parts = [f"{fmt.counted(page.total, 'record')} in {q.job}"]
        if self.candidates:
            parts.append(f"candidate {q.candidate}" if q.candidate
                         else f"{len(self.candidates)} candidates")
        if q.contains:
            parts.append(f"output contains “{fmt.clip(q.contains, 20)}”")
        if q.failed:
            parts.append("failed only")
        if outdated:  # the catalog has moved on since these were made
            parts.append(f"made on an older revision of {', '.join(outdated)}")
        self.query_one("#status", Static).update(Text(" · ".join(parts)))

    @on(PagedTable.NeedMore, "#predictions")
    def _more(self, event: PagedTable.NeedMore) -> None:
        q, offset = self.query_now, event.offset
        self.load("more", lambda: self.data.predictions(q, offset=offset),
                  lambda page: self._extend(q, page))

    def _extend(self, q: PredictionQuery, page: Page) -> None:
        if q != self.shown:
            return
        self.records.update({self._key(r): r for r in page.rows})
        self.query_one("#predictions", PagedTable).extend(
            page.offset, [self._cells(r) for r in page.rows],
            [self._key(r) for r in page.rows])

    def _show_candidates(self, q: PredictionQuery, labels: list[str]) -> None:
        """The candidate chooser, shown for a job with several candidates."""
        chooser = self.query_one("#candidate", Select)
        several = labels if len(labels) > 1 else []
        if several != self.candidates:
            self.candidates = several
            with chooser.prevent(Select.Changed):
                chooser.set_options([(label, label) for label in several])
        chooser.display = bool(several)
        with chooser.prevent(Select.Changed):
            chooser.value = q.candidate if q.candidate in several else Select.NULL

    @staticmethod
    def _key(r: dict[str, Any]) -> str:
        """A row's key: an input has one row per candidate."""
        return f"{r['input_id']}\x1f{r.get('candidate') or ''}"

    def _cells(self, r: dict[str, Any]) -> tuple:
        wide = 20 if self.candidates else 24
        if r.get("error"):
            output = Text(fmt.clip(f"✗ {r['error']}", wide), style="red")
        else:
            output = Text(fmt.clip(r.get("output"), wide))
        if self.candidates:
            label = r.get("candidate") or ""
            return (fmt.clip(r["input_id"], 12),
                    self.labels.get(label) or fmt.clip(label, CANDIDATE_WIDTH),
                    own_part(r.get("prompt"), self.prompt_prefix, 16), output,
                    r.get("finish_reason") or "")
        return (fmt.clip(r["input_id"], 14), own_part(r.get("prompt"), self.prompt_prefix, 24),
                output, r.get("finish_reason") or "")

    # -- events ---------------------------------------------------------------------------

    @on(JobList.Chosen)
    def _job(self, event: JobList.Chosen) -> None:
        self.select_job(event.job)

    def select_job(self, job: str) -> None:
        """Show `job` (from another screen, or the job list)."""
        self.query_one(JobList).choose(job)
        self.set_query(replace(self.query_now, job=job, candidate=None) if self.query_now
                       else PredictionQuery(job))

    def select_candidate(self, label: str | None) -> None:
        """Show one candidate's records (None: every candidate's)."""
        if self.query_now is not None:
            self.set_query(replace(self.query_now, candidate=label))

    @on(Select.Changed, "#candidate")
    def _candidate(self, event: Select.Changed) -> None:
        self.select_candidate(event.value if isinstance(event.value, str) else None)

    @on(Input.Changed, "#contains")
    def _contains(self, event: Input.Changed) -> None:
        if self.query_now is not None:
            self.set_query(replace(self.query_now, contains=event.value))

    @on(Input.Submitted, "#contains")
    def _to_results(self) -> None:
        self.query_one("#predictions").focus()

    @on(DataTable.RowSelected, "#predictions")
    def _open(self, event: DataTable.RowSelected) -> None:
        record = self.records.get(event.row_key.value)
        if record is not None:
            self.app.open_record(record)

    # -- actions --------------------------------------------------------------------------

    def _current(self) -> dict[str, Any] | None:
        table = self.query_one("#predictions", PagedTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        return self.records.get(key.value)

    def action_search(self) -> None:
        self.query_one("#contains").focus()

    def action_focus(self, widget_id: str) -> None:
        self.query_one(f"#{widget_id}").focus()

    def action_next_candidate(self) -> None:
        """Every candidate, then each in turn."""
        if self.query_now is None or not self.candidates:
            return
        order: list[str | None] = [None, *self.candidates]
        now = order.index(self.query_now.candidate) if self.query_now.candidate in order else 0
        self.select_candidate(order[(now + 1) % len(order)])

    def action_failed(self) -> None:
        if self.query_now is not None:
            self.set_query(replace(self.query_now, failed=None if self.query_now.failed else True))

    def action_model(self) -> None:
        record = self._current()
        if record is not None:
            self.app.open_model(record["model"])

    def action_compare(self) -> None:
        """The job's candidates side by side: score, speed and cost."""
        if self.query_now is not None:
            self.app.open_comparison(self.query_now.job)

    def action_refresh(self) -> None:
        self.data.refresh()
        self.load_jobs()

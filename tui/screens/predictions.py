"""Predictions: pick a job, page through its cached records, search their outputs."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Footer, Header, Input, Static

from tui import format as fmt
from tui.data import JobSummary, Page, PredictionQuery
from tui.screens.base import DataScreen
from tui.widgets.job_list import JobList
from tui.widgets.paged_table import PagedTable

COLUMNS = [("Input id", 14), ("Prompt", 24), ("Output", 24), ("Finish", 7)]


class PredictionsScreen(DataScreen):
    AUTO_FOCUS = "#predictions"
    BINDINGS = [
        Binding("slash", "search", "Search"),
        Binding("f", "failed", "Failed"),
        Binding("m", "model", "Model"),
        Binding("j", "focus('jobs')", "Jobs", show=False),
        Binding("r", "refresh", "Refresh"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.query_now: PredictionQuery | None = None
        self.shown: PredictionQuery | None = None
        self.records: dict[str, dict[str, Any]] = {}

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="body"):
            yield JobList(id="jobs")
            with Vertical(id="records"):
                yield Input(placeholder="search outputs  ( / )", id="contains", compact=True)
                yield PagedTable(COLUMNS, id="predictions")
                yield Static(id="status")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.sub_title = "Predictions"
        self.query_one("#jobs").border_title = "Jobs"
        self.query_one("#predictions").loading = True
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
        self.load("page", lambda: self.data.predictions(q, with_total=True),
                  lambda page: self._show(q, page))

    def _show(self, q: PredictionQuery, page: Page) -> None:
        table = self.query_one("#predictions", PagedTable)
        table.loading = False
        self.records = {r["input_id"]: r for r in page.rows}
        table.show([self._cells(r) for r in page.rows], [r["input_id"] for r in page.rows],
                   page.total)
        self.shown = q
        parts = [f"{fmt.counted(page.total, 'record')} in {q.job}"]
        if q.contains:
            parts.append(f"output contains “{fmt.clip(q.contains, 20)}”")
        if q.failed:
            parts.append("failed only")
        self.query_one("#status", Static).update(Text(" · ".join(parts)))

    @on(PagedTable.NeedMore, "#predictions")
    def _more(self, event: PagedTable.NeedMore) -> None:
        q, offset = self.query_now, event.offset
        self.load("more", lambda: self.data.predictions(q, offset=offset),
                  lambda page: self._extend(q, page))

    def _extend(self, q: PredictionQuery, page: Page) -> None:
        if q != self.shown:
            return
        self.records.update({r["input_id"]: r for r in page.rows})
        self.query_one("#predictions", PagedTable).extend(
            page.offset, [self._cells(r) for r in page.rows],
            [r["input_id"] for r in page.rows])

    @staticmethod
    def _cells(r: dict[str, Any]) -> tuple:
        if r.get("error"):
            output = Text(fmt.clip(f"✗ {r['error']}", 24), style="red")
        else:
            output = Text(fmt.clip(r.get("output"), 24))
        return (fmt.clip(r["input_id"], 14), fmt.clip(r.get("prompt"), 24), output,
                r.get("finish_reason") or "")

    # -- events ---------------------------------------------------------------------------

    @on(JobList.Chosen)
    def _job(self, event: JobList.Chosen) -> None:
        self.select_job(event.job)

    def select_job(self, job: str) -> None:
        """Show `job` (from another screen, or the job list)."""
        self.query_one(JobList).choose(job)
        self.set_query(replace(self.query_now, job=job) if self.query_now
                       else PredictionQuery(job))

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

    def action_failed(self) -> None:
        if self.query_now is not None:
            self.set_query(replace(self.query_now, failed=None if self.query_now.failed else True))

    def action_model(self) -> None:
        record = self._current()
        if record is not None:
            self.app.open_model(record["model"])

    def action_refresh(self) -> None:
        self.data.refresh()
        self.load_jobs()

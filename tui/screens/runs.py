"""Runs: the history of batch runs, newest first; the highlighted run shown in full."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header

from catalog.records import RunRecord
from tui import format as fmt
from tui.data import Page
from tui.screens.base import DataScreen
from tui.widgets.paged_table import PagedTable
from tui.widgets.run_panel import RunPanel, status_text

COLUMNS = [("Started (UTC)", 16), ("Job", 16), ("Status", 11), ("Inputs", None),
           ("Cached", None), ("Generated", None), ("Failed", None), ("tok/s", None),
           ("Duration", None)]


class RunsScreen(DataScreen):
    AUTO_FOCUS = "#runs"
    BINDINGS = [
        Binding("r", "refresh", "Refresh"),
        Binding("p", "predictions", "Job's predictions"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.runs: dict[str, RunRecord] = {}
        self.shown = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield PagedTable(COLUMNS, id="runs")
        yield RunPanel(id="run")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.sub_title = "Runs"
        self.query_one("#runs").loading = True
        self.reload()

    def reload(self) -> None:
        self.load("page", lambda: self.data.runs(with_total=True), self._show)

    def _show(self, page: Page) -> None:
        table = self.query_one("#runs", PagedTable)
        table.loading = False
        self.runs = {r.id: r for r in page.rows}
        table.show([self._cells(r) for r in page.rows], [r.id for r in page.rows], page.total)
        self.query_one(RunPanel).show(page.rows[0] if page.rows else None)
        self.shown = True

    @on(PagedTable.NeedMore, "#runs")
    def _more(self, event: PagedTable.NeedMore) -> None:
        offset = event.offset
        self.load("more", lambda: self.data.runs(offset=offset), self._extend)

    def _extend(self, page: Page) -> None:
        self.runs.update({r.id: r for r in page.rows})
        self.query_one("#runs", PagedTable).extend(
            page.offset, [self._cells(r) for r in page.rows], [r.id for r in page.rows])

    @staticmethod
    def _cells(r: RunRecord) -> tuple:
        def num(n: int) -> Text:
            return Text(fmt.count(n), justify="right")

        failed = Text(fmt.count(r.failed), justify="right", style="yellow" if r.failed else "")
        return (fmt.when(r.started_at), fmt.clip(r.job, 16), status_text(r.status),
                num(r.inputs), num(r.cached + r.copied), num(r.generated), failed,
                Text(fmt.rate(r.tokens_per_s), justify="right"),
                Text(fmt.duration(r.duration_s), justify="right"))

    @on(DataTable.RowHighlighted, "#runs")
    def _highlight(self, event: DataTable.RowHighlighted) -> None:
        self.query_one(RunPanel).show(self.runs.get(event.row_key.value))

    def _current(self) -> RunRecord | None:
        table = self.query_one("#runs", PagedTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        return self.runs.get(key.value)

    def action_predictions(self) -> None:
        run = self._current()
        if run is not None:
            self.app.open_predictions(run.job)

    def action_refresh(self) -> None:
        self.reload()

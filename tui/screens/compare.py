"""A job's candidates side by side: the comparison table and score against cost."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header, Static
from textual_plotext import PlotextPlot

from batch.score.chart import draw
from batch.score.compare import usd_text
from tui import format as fmt
from tui.labels import short_labels
from tui.screens.base import DataScreen

if TYPE_CHECKING:  # the comparison's record type, for annotations
    from batch.score.compare import CandidateComparison

CANDIDATE_WIDTH = 16
CHART_LABEL_WIDTH = 24  # under a bar, or in the legend
COLUMNS = [("", 1), ("Candidate", CANDIDATE_WIDTH), ("Rows", None), ("Failed", None), ("Score", None),
           ("95% interval", 14), ("tok/s", None), ("Start", None), ("Engine", None),
           ("Params", None), ("$/1k", None)]


def _num(value: float | None, spec: str = ".3f") -> str:
    return "" if value is None else format(value, spec)


def cells(e: CandidateComparison, label: str) -> tuple:
    """A candidate's row; `label` is its label as the column shows it (tui.labels)."""
    def right(text: str, style: str = "") -> Text:
        return Text(text, justify="right", style=style)

    return (
        Text("*", style="bold green") if e.pareto else "",
        label,
        right(fmt.count(e.rows)),
        right(fmt.count(e.failures), "yellow" if e.failures else ""),
        right(_num(e.score), "bold"),
        f"[{_num(e.ci_low)}, {_num(e.ci_high)}]" if e.n else "",
        right(fmt.rate(e.tokens_per_s, 0)),
        right(fmt.duration(e.engine_start_s)),
        right(fmt.duration(e.engine_s)),
        right(fmt.params(e.parameters)),
        right(usd_text(e.cost_per_1k)),
    )


class ComparisonScreen(DataScreen):
    AUTO_FOCUS = "#comparison"
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("m", "model", "Model"),
        Binding("r", "refresh", "Refresh"),
    ]

    def __init__(self, job: str) -> None:
        super().__init__()
        self.job = job
        self.entries: list[CandidateComparison] | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield DataTable(id="comparison", cursor_type="row", zebra_stripes=True)
        yield PlotextPlot(id="chart")
        yield Static(id="status")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.sub_title = f"Compare · {self.job}"
        table = self.query_one("#comparison", DataTable)
        for label, width in COLUMNS:
            table.add_column(label, width=width)
        table.loading = True
        self.reload()

    def reload(self) -> None:
        job = self.job
        self.load("comparison", lambda: self.data.comparison(job), self._show)

    def _show(self, entries: list[CandidateComparison]) -> None:
        self.entries = entries
        table = self.query_one("#comparison", DataTable)
        table.loading = False
        table.clear()
        labels = short_labels((e.label for e in entries), CANDIDATE_WIDTH)
        for i, e in enumerate(entries):
            table.add_row(*cells(e, labels[e.label]), key=str(i))
        plot = self.query_one(PlotextPlot)
        note = draw(plot.plt, entries, short_labels((e.label for e in entries), CHART_LABEL_WIDTH))
        plot.refresh()
        metric = next((e.metric for e in entries if e.metric), None)
        parts = [fmt.counted(len(entries), "candidate"),
                 f"score: {metric}" if metric else "not scored yet (almanac score JOB_FILE)"]
        if any(e.pareto for e in entries):
            parts.append("* on the quality/cost front")
        if note:
            parts.append(note)
        stale = [e.label for e in entries if e.revision_current is False]
        if stale:
            parts.append(f"made on a replaced revision: {', '.join(stale)}")
        self.query_one("#status", Static).update(Text(" · ".join(parts)))

    def _current(self) -> CandidateComparison | None:
        table = self.query_one("#comparison", DataTable)
        if not self.entries or not table.row_count:
            return None
        return self.entries[table.cursor_row]

    def action_model(self) -> None:
        entry = self._current()
        if entry is not None:
            self.app.open_model(entry.model, push=True)

    def action_refresh(self) -> None:
        self.data.refresh()
        self.reload()

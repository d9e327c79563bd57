"""One model in full, and the jobs whose cached predictions it produced."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Footer, Header, OptionList
from textual.widgets.option_list import Option

from catalog.records import MeasuredEvalRecord, ModelRecord
from tui.data import JobUse
from tui.screens.base import DataScreen
from tui.widgets.model_card import ModelCard


def measured_text(m: MeasuredEvalRecord) -> Text:
    interval = f" [{m.ci_low:.3f}, {m.ci_high:.3f}]" if m.ci_low is not None and m.ci_high is not None else ""
    who = f"  {m.label}" if m.label and m.label != m.model_ref else ""
    return Text.assemble((m.task, "bold"), f"  {m.metric} {m.value:.3f}{interval}  n={m.n:,}",
                         (who, "dim"))


class ModelDetailScreen(DataScreen):
    AUTO_FOCUS = "#detail"
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("b", "base", "Base model"),
        Binding("r", "refresh", "Refresh"),
    ]

    def __init__(self, ref: str) -> None:
        super().__init__()
        self.ref = ref
        self.model: ModelRecord | None = None
        self.jobs: list[JobUse] | None = None
        self.measured: list[MeasuredEvalRecord] = []

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="detail"):
            yield ModelCard(id="card")
        yield OptionList(id="measured", classes="-empty")
        yield OptionList(id="jobs")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.sub_title = self.ref
        self.query_one("#jobs").border_title = "Jobs with predictions from this model"
        self.query_one("#measured").border_title = "Measured on jobs (Enter: compare the candidates)"
        self.query_one("#detail").loading = True
        self.reload()

    def reload(self) -> None:
        ref = self.ref
        self.load("model", lambda: self.data.model(ref), self._show_model)
        self.load("jobs", lambda: self.data.model_jobs(ref), self._show_jobs)

    def _show_model(self, model: ModelRecord | None) -> None:
        self.query_one("#detail").loading = False
        if model is None:
            self.query_one(ModelCard).update(
                Text(f"{self.ref} is not in the catalog (see `almanac models add`).",
                     style="yellow"))
            return
        self.model = model
        self.sub_title = model.name
        self.query_one(ModelCard).show(model)
        self._show_measured(model.measured)

    def _show_measured(self, measured: list[MeasuredEvalRecord]) -> None:
        """Scores measured on users' jobs, apart from the card's evals; hidden without any."""
        options = self.query_one("#measured", OptionList)
        options.set_class(not measured, "-empty")
        self.measured = measured
        options.set_options([Option(measured_text(m), id=str(i)) for i, m in enumerate(measured)])
        if measured:
            options.highlighted = 0

    def _show_jobs(self, jobs: list[JobUse]) -> None:
        self.jobs = jobs
        options = self.query_one("#jobs", OptionList)
        if jobs:
            options.set_options([Option(Text.assemble((j.job, "bold"), f"  {j.rows:,} rows"),
                                        id=j.job) for j in jobs])
            options.highlighted = 0
        else:
            options.set_options([Option(Text("none: no cached predictions from this model",
                                             style="dim"), disabled=True)])

    @on(OptionList.OptionSelected, "#measured")
    def _compare_job(self, event: OptionList.OptionSelected) -> None:
        if event.option.id is not None:  # one option per measured eval: several per job
            self.app.open_comparison(self.measured[int(event.option.id)].task)

    @on(OptionList.OptionSelected, "#jobs")
    def _open_job(self, event: OptionList.OptionSelected) -> None:
        if event.option.id:
            self.app.open_predictions(event.option.id)

    def action_base(self) -> None:
        if self.model is None or not self.model.base_model:
            self.notify("This model has no base model.", severity="warning")
            return
        self.app.open_model(self.model.base_model, push=True)

    def action_refresh(self) -> None:
        self.data.refresh()
        self.reload()

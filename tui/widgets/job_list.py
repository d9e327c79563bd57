"""The jobs with cached predictions, to pick one from."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.message import Message
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from tui.data import JobSummary


class JobList(OptionList):
    class Chosen(Message):
        def __init__(self, job: str) -> None:
            super().__init__()
            self.job = job

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.chosen: str | None = None
        self._jobs: list[JobSummary] = []

    def show_jobs(self, jobs: list[JobSummary], chosen: str | None) -> None:
        self._jobs, self.chosen = jobs, chosen
        self._rebuild()

    def choose(self, job: str) -> None:
        self.chosen = job
        self._rebuild()

    def _rebuild(self) -> None:
        self.set_options([Option(self._prompt(j), id=j.job) for j in self._jobs])
        ids = [j.job for j in self._jobs]
        if self.chosen in ids:
            self.highlighted = ids.index(self.chosen)

    def _prompt(self, j: JobSummary) -> Text:
        chosen = j.job == self.chosen
        text = Text("● " if chosen else "  ", style="bold")
        text.append(j.job, style="bold" if chosen else "")
        text.append(f"\n  {j.rows:,} rows", style="dim")
        if j.failed:
            text.append(f", {j.failed:,} failed", style="yellow")
        return text

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option.id and event.option.id != self.chosen:
            self.chosen = event.option.id
            self._rebuild()
            self.post_message(self.Chosen(event.option.id))

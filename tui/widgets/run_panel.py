"""One run in full under the runs table; a failed run shows its error."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from catalog.records import RunRecord
from tui import format as fmt

STATUS_STYLE = {"ok": "green", "failed_rows": "yellow", "error": "bold red",
                "interrupted": "magenta", "running": "cyan"}


def status_text(status: str) -> Text:
    return Text(status, style=STATUS_STYLE.get(status, ""))


class RunPanel(Static):
    def show(self, run: RunRecord | None) -> None:
        if run is None:
            self.update(Text("No runs yet: `almanac run JOB.toml` records one here.",
                             style="dim"))
            return
        facts = Table.grid(padding=(0, 2))
        for _ in range(4):
            facts.add_column(no_wrap=True)
        facts.add_row(Text("run", style="dim"), run.id, Text("model", style="dim"),
                      run.model_ref)
        facts.add_row(Text("started", style="dim"), fmt.when(run.started_at),
                      Text("finished", style="dim"), fmt.when(run.finished_at))
        facts.add_row(Text("cached", style="dim"), fmt.count(run.cached),
                      Text("copied", style="dim"), fmt.count(run.copied))
        facts.add_row(Text("tokens in", style="dim"), fmt.count(run.prompt_tokens),
                      Text("tokens out", style="dim"), fmt.count(run.output_tokens))
        facts.add_row(Text("engine start", style="dim"), fmt.duration(run.engine_start_s),
                      Text("generation", style="dim"), fmt.duration(run.generation_s))
        facts.add_row(Text("revision", style="dim"), run.revision or "",
                      Text("hardware", style="dim"), run.hardware or "")
        head = Text.assemble((run.job, "bold"), "  ", status_text(run.status))
        parts = [head, facts]
        if run.error:
            parts.append(Text.assemble(("error: ", "bold red"), run.error))
        self.update(Group(*parts))

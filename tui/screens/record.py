"""One cached prediction in full, with a jump to the model that made it."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header

from tui.widgets.record_view import RecordView


class RecordScreen(Screen):
    """Shows a record the predictions screen already holds: no query of its own."""

    AUTO_FOCUS = "#record"
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("m", "model", "Model"),
    ]

    def __init__(self, record: dict[str, Any]) -> None:
        super().__init__()
        self.record = record

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="record"):
            yield RecordView(id="view")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.sub_title = f"{self.record['job']} · {self.record['input_id']}"
        self.query_one(RecordView).show(self.record)

    def action_model(self) -> None:
        self.app.open_model(self.record["model"])

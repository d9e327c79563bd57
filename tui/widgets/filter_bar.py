"""The models screen's search box and size filters, parsed into plain values by the
catalog's filter parser (the one `almanac models list` and HTTP `/models` use)."""

from __future__ import annotations

from dataclasses import dataclass

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.message import Message
from textual.validation import Function
from textual.widgets import Input

from catalog.filters import FilterError, parse_memory, parse_params_range


def _valid_range(text: str) -> bool:
    try:
        parse_params_range(text)
    except FilterError:
        return False
    return True


def _fits(text: str) -> int | None:
    return parse_memory("fits", text.strip() or None)


def _valid_memory(text: str) -> bool:
    try:
        _fits(text)
    except FilterError:
        return False
    return True


@dataclass(frozen=True)
class Filters:
    search: str = ""
    min_params: int | None = None
    max_params: int | None = None
    fits_bytes: int | None = None


class FilterBar(Horizontal):
    """Posts `Changed` with every valid edit; an invalid field is marked and ignored."""

    class Changed(Message):
        def __init__(self, filters: Filters) -> None:
            super().__init__()
            self.filters = filters

    def compose(self) -> ComposeResult:
        yield Input(placeholder="search models  ( / )", id="search", compact=True)
        yield Input(placeholder="params 1B-8B", id="params", compact=True,
                    validators=[Function(_valid_range, "try 1B-8B, <8B or >1B")])
        yield Input(placeholder="fits 24GB", id="fits", compact=True,
                    validators=[Function(_valid_memory, "try 24GB or 512MB")])

    def focus_search(self) -> None:
        self.query_one("#search", Input).focus()

    def current(self) -> Filters:
        low, high = parse_params_range(self.query_one("#params", Input).value)
        return Filters(self.query_one("#search", Input).value, low, high,
                       _fits(self.query_one("#fits", Input).value))

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        if event.validation_result is not None and not event.validation_result.is_valid:
            return
        try:
            filters = self.current()
        except FilterError:  # the other field is the invalid one: wait until it is fixed
            return
        self.post_message(self.Changed(filters))

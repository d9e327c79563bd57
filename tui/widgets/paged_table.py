"""A DataTable that loads rows a page at a time as the cursor nears the end."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.text import Text
from textual import on
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable

# Ask for the next page this many rows before the cursor reaches the last one,
# so scrolling with the keyboard rarely waits.
AHEAD = 10


class PagedTable(DataTable):
    """Rows arrive in pages; `NeedMore` asks the screen for the next one."""

    # Rows are what these tables move through: Home and End go to the first and last
    # row (DataTable's own Home/End move between columns).
    BINDINGS = [
        Binding("home", "scroll_top", "First row", show=False),
        Binding("end", "scroll_bottom", "Last row", show=False),
    ]

    class NeedMore(Message):
        def __init__(self, table: PagedTable, offset: int) -> None:
            super().__init__()
            self.table = table
            self.offset = offset

        @property
        def control(self) -> PagedTable:
            return self.table

    def __init__(self, columns: Sequence[tuple[str, int | None]], **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self._columns = list(columns)
        self.total: int | None = None
        self._asked_at: int | None = None

    def on_mount(self) -> None:
        for label, width in self._columns:
            self.add_column(label, width=width, key=label)

    def set_columns(self, columns: Sequence[tuple[str, int | None]]) -> None:
        """Other columns (and no rows): a job with several candidates shows whose."""
        if list(columns) == self._columns:
            return
        self._columns = list(columns)
        self.clear(columns=True)
        self.total, self._asked_at = None, None
        self.on_mount()

    def show(self, rows: list[Sequence[object]], keys: list[str], total: int | None) -> None:
        """Replace everything with the first page."""
        self.clear()
        self.total = total
        self._asked_at = None
        self._append(rows, keys)

    def extend(self, offset: int, rows: list[Sequence[object]], keys: list[str]) -> None:
        """Append a later page; one that does not follow on (a stale answer) is dropped."""
        if offset != self.row_count:
            return
        self._append(rows, keys)
        self._maybe_ask(self.cursor_row)

    def _append(self, rows: list[Sequence[object]], keys: list[str]) -> None:
        seen = set()
        for row, key in zip(rows, keys, strict=True):
            # Duplicate keys would raise; a row that moved between two pages is shown once.
            if key in seen or key in self.rows:
                continue
            seen.add(key)
            # Text, not str: DataTable reads a str as markup, and "[…]" is common in
            # model names, prompts and outputs.
            self.add_row(*(Text(c) if isinstance(c, str) else c for c in row), key=key)

    @property
    def has_more(self) -> bool:
        return self.total is not None and self.row_count < self.total

    @on(DataTable.RowHighlighted)
    def _near_end(self, event: DataTable.RowHighlighted) -> None:
        self._maybe_ask(event.cursor_row)

    def _maybe_ask(self, cursor_row: int) -> None:
        if self.has_more and cursor_row >= self.row_count - AHEAD \
                and self._asked_at != self.row_count:
            self._asked_at = self.row_count
            self.post_message(self.NeedMore(self, self.row_count))

"""The language facet: languages with models under the other filters, with counts."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.message import Message
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from tui.data import FacetCount
from tui.format import clip

ALL = "All languages"


class LanguageList(OptionList):
    """Selecting a language filters by it; the first entry clears the filter."""

    class Chosen(Message):
        def __init__(self, code: str | None) -> None:
            super().__init__()
            self.code = code

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.chosen: str | None = None
        self._facets: list[FacetCount] = []

    def show(self, facets: list[FacetCount] | None, chosen: str | None) -> None:
        """New counts (None: keep the ones shown) and the chosen language, in one repaint."""
        if facets is None and chosen == self.chosen:
            return
        self.chosen = chosen
        if facets is not None:
            self._facets = facets
        self._rebuild()

    def _rebuild(self) -> None:
        # Keep the highlight on the same language while counts and order change.
        keep = None
        if self.highlighted is not None and self.option_count:
            keep = self.get_option_at_index(self.highlighted).id
        facets = list(self._facets)
        if self.chosen and all(f.key != self.chosen for f in facets):
            # The chosen language has no models under the other filters: still show it,
            # with its zero, so it can be seen and cleared.
            facets.append(FacetCount(self.chosen, "", 0))
        options = [Option(self._prompt(ALL, "", None, self.chosen is None), id="")]
        options += [Option(self._prompt(f.key, f.label, f.count, f.key == self.chosen), id=f.key)
                    for f in facets]
        self.set_options(options)
        ids = [o.id for o in options]
        self.highlighted = ids.index(keep) if keep in ids else 0

    @staticmethod
    def _prompt(code: str, name: str, count: int | None, chosen: bool) -> Text:
        style = "bold" if chosen else ""
        # 21 columns: what the 26-column facet panel leaves inside its border and padding.
        text = Text("●" if chosen else " ", style=style)
        if count is None:
            text.append(" " + code, style=style)
            return text
        text.append(f"{code:<4}", style=style)
        text.append(f"{clip(name, 9):<9}", style=style)
        text.append(f"{count:>7,}", style="dim")
        return text

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        # Marked by the screen together with the new counts: one repaint, not two.
        self.post_message(self.Chosen(event.option.id or None))

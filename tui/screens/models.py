"""Models: a table of the catalog with domain and language facets, search and size filters."""

from __future__ import annotations

import time
from dataclasses import replace

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.timer import Timer
from textual.widgets import DataTable, Footer, Header, Input, Static

from tui import format as fmt
from tui.data import ModelQuery, ModelRow, Page
from tui.screens.base import DataScreen
from tui.widgets.domain_tree import DomainTree
from tui.widgets.filter_bar import FilterBar
from tui.widgets.language_list import LanguageList
from tui.widgets.paged_table import PagedTable

# Sized so the facets and every column fit 100 columns; `f` hides the facets at 80.
COLUMNS = [("Name", 24), ("Domain", 11), ("Lang", 5), ("Params", 6), ("License", 9),
           ("tok/s", 5)]
# Edits closer together than this are typing: the last one is loaded once they pause.
# The first edit after a pause (and a paste) loads at once.
TYPING_GAP_S = 0.15
FACET_GROUPS = {"domain": "domains", "language": "languages"}  # facet -> its load group


class ModelsScreen(DataScreen):
    AUTO_FOCUS = "#models"
    BINDINGS = [
        Binding("slash", "search", "Search"),
        Binding("r", "refresh", "Refresh"),
        Binding("d", "focus('domains')", "Domains", show=False),
        Binding("l", "focus('languages')", "Languages", show=False),
        Binding("c", "clear", "Clear"),
        Binding("f", "facets", "Facets"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.query_now = ModelQuery()
        # What is on screen, so a change reloads only what it affects and the
        # benchmark can tell when a redraw is complete.
        self.shown: ModelQuery | None = None
        self.domains_for: ModelQuery | None = None
        self.languages_for: ModelQuery | None = None
        self._arriving: tuple[ModelQuery | None, dict, set] = (None, {}, set())
        self._last_edit = 0.0
        self._force_facets = False  # a refresh reloads the facet counts too
        self._counting: dict[str, ModelQuery] = {}  # facet -> the query its counts load for
        self._typed: Timer | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield FilterBar(id="filters")
        with Horizontal(id="body"):
            with Vertical(id="facets"):
                yield DomainTree(id="domains")
                yield LanguageList(id="languages")
            yield PagedTable(COLUMNS, id="models")
        yield Static(id="status")
        # The palette stays on ctrl+p and the header's ⭘; its footer hint would push
        # "q Quit" off an 80-column terminal.
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.sub_title = "Models"
        self.query_one("#domains").border_title = "Domain"
        self.query_one("#languages").border_title = "Language"
        self.query_one("#models").loading = True
        self.reload()

    # -- loading --------------------------------------------------------------------------

    def reload(self, *, force: bool = False) -> None:
        """Load what `query_now` shows: first the table's first page and its total (in
        parallel: SQLite works outside the GIL), shown together; then the facet counts,
        each shown as it arrives. At a million models a search's facet counts read every
        match, where its first page is read from the full-text index in order: on two
        cores they would slow the page down if they ran beside it."""
        q = self.query_now
        parts = {"page": lambda: self.data.models(q), "total": lambda: self.data.count(q)}
        self._arriving = (q, {}, set(parts))
        self._force_facets = self._force_facets or force
        for facet, counting in list(self._counting.items()):
            if counting.without(facet) != q.without(facet):  # counts no longer wanted
                self.drop(FACET_GROUPS[facet])
                del self._counting[facet]
        for name, fetch in parts.items():
            self.load(name, fetch, lambda result, name=name: self._arrive(q, name, result))

    def _load_facets(self, q: ModelQuery) -> None:
        force, self._force_facets = self._force_facets, False
        shown = {"domain": self.domains_for, "language": self.languages_for}
        for facet, group in FACET_GROUPS.items():
            # A facet's counts ignore its own choice: picking a domain leaves them as they are.
            have = self._counting.get(facet) or shown[facet]
            if force or have is None or have.without(facet) != q.without(facet):
                self._counting[facet] = q
                fetch = self.data.domain_facets if facet == "domain" else self.data.language_facets
                self.load(group, lambda fetch=fetch: fetch(q),
                          lambda counts, group=group: self._facet(q, group, counts))

    def _arrive(self, q: ModelQuery, name: str, result: object) -> None:
        waiting_for, arrived, wanted = self._arriving
        if q != waiting_for:
            return
        arrived[name] = result
        if set(arrived) != wanted:
            return
        with self.app.batch_update():  # page, total and the facets' marks: one repaint
            arrived["page"].total = arrived["total"]
            self._show_page(q, arrived["page"])
            self.query_one("#domains", DomainTree).show(None, q.domain)
            self.query_one("#languages", LanguageList).show(None, q.language)
        self._load_facets(q)

    def _facet(self, q: ModelQuery, name: str, counts: object) -> None:
        facet = "domain" if name == "domains" else "language"
        if self._counting.get(facet) == q:
            del self._counting[facet]
        now = self.query_now
        if q.without(facet) != now.without(facet):
            return  # counted under other filters than the ones shown now
        if name == "domains":
            self.query_one("#domains", DomainTree).show(counts, now.domain)
            self.domains_for = q
        else:
            self.query_one("#languages", LanguageList).show(counts, now.language)
            self.languages_for = q

    def _show_page(self, q: ModelQuery, page: Page) -> None:
        table = self.query_one("#models", PagedTable)
        table.loading = False
        table.show([self._cells(r) for r in page.rows], [r.ref for r in page.rows], page.total)
        self.shown = q
        self._status(page.total)

    @on(PagedTable.NeedMore, "#models")
    def _more(self, event: PagedTable.NeedMore) -> None:
        q, offset = self.query_now, event.offset
        self.load("more", lambda: self.data.models(q, offset=offset),
                  lambda page: self._extend(q, page))

    def _extend(self, q: ModelQuery, page: Page) -> None:
        if q == self.shown:
            self.query_one("#models", PagedTable).extend(
                page.offset, [self._cells(r) for r in page.rows], [r.ref for r in page.rows])

    @staticmethod
    def _cells(r: ModelRow) -> tuple:
        return (fmt.clip(r.name, 24), fmt.clip(", ".join(r.domains), 11),
                fmt.clip(" ".join(r.languages), 5), Text(fmt.params(r.parameters), justify="right"),
                fmt.clip(r.license, 9), Text(fmt.rate(r.tokens_per_s, 0), justify="right"))

    def _status(self, total: int | None) -> None:
        q = self.query_now
        parts = [fmt.counted(total, "model")]
        if q.domain:
            parts.append(f"domain {q.domain}")
        if q.language:
            parts.append(f"language {q.language}")
        if q.search.strip():
            parts.append(f"matching “{fmt.clip(q.search.strip(), 20)}”")
        if q.min_params is not None or q.max_params is not None:
            parts.append(f"params {fmt.params(q.min_params) or '0'}–{fmt.params(q.max_params) or '∞'}")
        if q.fits_bytes is not None:
            parts.append(f"fits {q.fits_bytes / 1024**3:g} GiB")
        self.query_one("#status", Static).update(Text(" · ".join(parts)))

    def set_query(self, q: ModelQuery) -> None:
        if q != self.query_now:
            self.query_now = q
            self.reload()

    # -- events ---------------------------------------------------------------------------

    @on(DomainTree.Chosen)
    def _domain(self, event: DomainTree.Chosen) -> None:
        self.set_query(replace(self.query_now, domain=event.slug))

    @on(LanguageList.Chosen)
    def _language(self, event: LanguageList.Chosen) -> None:
        self.set_query(replace(self.query_now, language=event.code))

    @on(FilterBar.Changed)
    def _filters(self, event: FilterBar.Changed) -> None:
        f = event.filters
        q = replace(self.query_now, search=f.search, min_params=f.min_params,
                    max_params=f.max_params, fits_bytes=f.fits_bytes)
        now = time.monotonic()
        typing, self._last_edit = now - self._last_edit < TYPING_GAP_S, now
        if self._typed is not None:
            self._typed.stop()
            self._typed = None
        if typing:  # wait for a pause: each keystroke's search would be dropped anyway
            self._typed = self.set_timer(TYPING_GAP_S, lambda: self._paused(q))
        else:
            self.set_query(q)

    def _paused(self, q: ModelQuery) -> None:
        self._typed = None
        self.set_query(q)

    @property
    def loading_now(self) -> bool:
        return super().loading_now or self._typed is not None

    @on(Input.Submitted)
    def _to_results(self) -> None:
        self.query_one("#models").focus()

    @on(DataTable.RowSelected, "#models")
    def _open(self, event: DataTable.RowSelected) -> None:
        if self.shown != self.query_now:
            return  # the rows on screen are about to be replaced: Enter meant a new one
        self.app.open_model(event.row_key.value)

    # -- actions --------------------------------------------------------------------------

    def action_search(self) -> None:
        self.query_one(FilterBar).focus_search()

    def action_focus(self, widget_id: str) -> None:
        self.query_one(f"#{widget_id}").focus()

    def action_facets(self) -> None:
        facets = self.query_one("#facets")
        facets.display = not facets.display

    def action_refresh(self) -> None:
        self.data.refresh()
        self.reload(force=True)

    def action_clear(self) -> None:
        for field in self.query(Input):
            field.value = ""  # posts Changed; the FilterBar then clears the search and sizes
        self.set_query(ModelQuery())

"""The domain facet: the taxonomy as a tree, each domain with its model count."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.message import Message
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from tui.data import FacetCount

ALL = "All domains"


class DomainTree(Tree[str]):
    """Selecting a node filters by that domain (children included); the root clears it."""

    class Chosen(Message):
        def __init__(self, slug: str | None) -> None:
            super().__init__()
            self.slug = slug

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(ALL, data="", **kwargs)
        self.auto_expand = False
        self.guide_depth = 2
        self.chosen: str | None = None
        self._by_slug: dict[str, TreeNode[str]] = {}
        self._counts: dict[str, int] = {}

    def show(self, facets: list[FacetCount] | None, chosen: str | None) -> None:
        """New counts (None: keep the ones shown) and the chosen domain, in one repaint.
        The tree is built on first use, then only relabelled: cursor and scroll stay."""
        if facets is None and chosen == self.chosen:
            return
        self.chosen = chosen
        if facets is not None:
            self._counts = {f.key: f.count for f in facets}
            if not self._by_slug:
                self._add_nodes([f.key for f in facets])
        self._relabel()

    def _add_nodes(self, slugs: list[str]) -> None:
        for slug in slugs:  # sorted: parents before their children
            parent = self._by_slug.get(slug.rsplit("/", 1)[0], self.root) \
                if "/" in slug else self.root
            if any(s.startswith(slug + "/") for s in slugs):
                self._by_slug[slug] = parent.add(slug, data=slug, expand=True)
            else:
                self._by_slug[slug] = parent.add_leaf(slug, data=slug)
        self.root.expand()

    def _relabel(self) -> None:
        self.root.set_label(self._label(ALL, None, self.chosen is None))
        for slug, node in self._by_slug.items():
            node.set_label(self._label(slug.rsplit("/", 1)[-1], self._counts.get(slug, 0),
                                       slug == self.chosen))

    @staticmethod
    def _label(name: str, count: int | None, chosen: bool) -> Text:
        text = Text("● " if chosen else "", style="bold")
        text.append(name, style="bold" if chosen else "")
        if count is not None:
            text.append(f" {count:,}", style="dim" if count else "dim italic")
        return text

    def on_tree_node_selected(self, event: Tree.NodeSelected[str]) -> None:
        event.stop()
        # The screen marks the choice when it shows the counts that go with it: one
        # repaint, not two (each costs tens of milliseconds on a slow machine).
        self.post_message(self.Chosen(event.node.data or None))

"""The domain facet: the taxonomy as a tree, each domain with its model count."""

from __future__ import annotations

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

    def __init__(self, **kwargs) -> None:  # noqa: ANN003
        super().__init__(ALL, data="", **kwargs)
        self.auto_expand = False
        self.guide_depth = 2
        self.chosen: str | None = None
        self._by_slug: dict[str, TreeNode[str]] = {}
        self._counts: dict[str, int] = {}

    def show_counts(self, facets: list[FacetCount]) -> None:
        """Build the tree on first use, then only relabel: cursor and scroll stay put."""
        self._counts = {f.key: f.count for f in facets}
        if not self._by_slug:
            for f in facets:  # parents come before their children (sorted slugs)
                parent_slug = f.key.rsplit("/", 1)[0] if "/" in f.key else None
                parent = self._by_slug.get(parent_slug, self.root) if parent_slug else self.root
                self._by_slug[f.key] = parent.add(f.key, data=f.key, expand=True)
            self.root.expand()
        self._relabel()

    def choose(self, slug: str | None) -> None:
        self.chosen = slug or None
        self._relabel()

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
        slug = event.node.data or None
        self.choose(slug)
        self.post_message(self.Chosen(slug))

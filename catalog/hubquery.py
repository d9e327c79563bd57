"""What `almanac models discover` asks the Hub: its filters as `HfApi.list_models` arguments.

Every filter is pushed to the Hub (tags, languages, parameter range, pipeline tag, id
search, the model tree's adapter relation); nothing is listed whole and filtered here.
The Hub ANDs the values of one `filter`, so where ours mean "any of" (a domain is several
Hub tags, a language group several codes) discovery asks once per combination and merges
the answers. No I/O and no huggingface_hub import here: `--help` and the CLI's option
checks use this module.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal, get_args

from catalog import taxonomy
from schemas.errors import UsageError

DiscoverSort = Literal["downloads", "likes", "trending", "recent"]
DISCOVER_SORTS: tuple[str, ...] = get_args(DiscoverSort)
# Our sort names → list_models' `sort` and the ModelInfo attribute answers are merged by.
HUB_SORT = {"downloads": "downloads", "likes": "likes", "trending": "trending_score",
            "recent": "created_at"}
SORT_ATTRIBUTE = {"downloads": "downloads", "likes": "likes", "trending": "trending_score",
                  "recent": "created_at"}
DEFAULT_TASK = "text-generation"
# A guard against a filter that would fan out into hundreds of listings.
MAX_QUERIES = 128

# What discovery reads from each listed model (`catalog.hub.entry_from_model_info`), plus
# what it sorts merged answers by: only values `HfApi.list_models` documents for `expand`.
# The Hub answers 400 to the others: `baseModels`, `childrenModelCount` and `usedStorage`
# are for one model's page (huggingface_hub PR 3182), so lineage comes from the model
# tree's `base_model:<relation>:<id>` tags. The README body is not in a listing either:
# discovery imports without it, and `models refresh` fetches it.
LIST_EXPAND = [
    "sha", "cardData", "tags", "pipeline_tag", "safetensors", "gguf", "config",
    "gated", "downloads", "likes", "evalResults", "trendingScore", "createdAt",
]


class DiscoverError(UsageError, ValueError):
    """A discovery filter that means nothing; the message names the option."""


@dataclass
class DiscoverQuery:
    """What to look for on the Hub. `task=None` asks for any pipeline tag."""

    domains: list[str] = field(default_factory=list)
    languages: list[str] = field(default_factory=list)
    min_params: int | None = None
    max_params: int | None = None
    search: str | None = None
    adapters_of: str | None = None
    task: str | None = DEFAULT_TASK
    sort: str = "downloads"
    limit: int = 100

    def __post_init__(self) -> None:
        if self.sort not in DISCOVER_SORTS:
            raise DiscoverError(f"--sort: {self.sort!r} is not one of {', '.join(DISCOVER_SORTS)}")
        if self.limit < 1:
            raise DiscoverError(f"--limit: {self.limit} is below 1")
        if (self.min_params is not None and self.max_params is not None
                and self.min_params > self.max_params):
            raise DiscoverError("--min-params: is above --max-params")
        try:
            self.domains = [taxonomy.normalize_domain(d) for d in self.domains]
        except taxonomy.TaxonomyError as exc:
            raise DiscoverError(f"--domain: {exc}") from None
        try:
            taxonomy.expand_languages(self.languages)
        except taxonomy.TaxonomyError as exc:
            raise DiscoverError(f"--language: {exc}") from None
        if len(self.hub_queries()) > MAX_QUERIES:
            raise DiscoverError(
                f"--domain/--language: these filters need {len(self.hub_queries())} Hub listings "
                f"(at most {MAX_QUERIES}); ask for fewer domains or languages at a time")

    def hub_queries(self) -> list[dict[str, Any]]:
        """One `list_models` call's arguments per combination of a domain tag and a language."""
        tag_sets = self._domain_tags() or [None]
        languages = taxonomy.expand_languages(self.languages) or [None]
        common: dict[str, Any] = {"sort": HUB_SORT[self.sort], "limit": self.limit}
        if self.task:
            common["pipeline_tag"] = self.task
        if self.search:
            common["search"] = self.search
        if (span := parameter_range(self.min_params, self.max_params)) is not None:
            common["num_parameters"] = span
        out = []
        for tag, language in itertools.product(tag_sets, languages):
            filters = [f for f in (tag, language) if f]
            if self.adapters_of:
                # The model tree's tag: the Hub lists a base's LoRA adapters under it.
                filters.append(f"base_model:adapter:{self.adapters_of}")
            out.append({**common, **({"filter": filters} if filters else {})})
        return out

    def _domain_tags(self) -> list[str]:
        tags: list[str] = []
        for domain in self.domains:
            tags += [t for t in taxonomy.hub_tags_for(domain) if t not in tags]
        return tags


def parameter_range(low: int | None, high: int | None) -> str | None:
    """`min:7B,max:13B`, the Hub's syntax for a parameter count range."""
    parts = [f"{name}:{hub_count(n)}" for name, n in (("min", low), ("max", high)) if n is not None]
    return ",".join(parts) or None


def hub_count(n: int) -> str:
    """A parameter count in the Hub's units: 7000000000 → 7B, 1100000000 → 1.1B."""
    for unit, scale in (("T", 10**12), ("B", 10**9), ("M", 10**6), ("K", 10**3)):
        if n >= scale:
            return f"{(Decimal(n) / scale).normalize():f}{unit}"
    return str(n)

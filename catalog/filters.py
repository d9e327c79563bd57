"""Model filters from what users type: the one parser behind `almanac models list`'s
options, the HTTP `/models` query string and the TUI's filter boxes, so `--min-params
7B`, `?min_params=7B` and the TUI's `7B-` mean the same and are refused the same way.

No SQLAlchemy here (catalog.search runs the filter): `--help` and the TUI's input
validators import this module.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal, get_args

from catalog import sizes, taxonomy
from schemas.errors import UsageError

Quant = sizes.Quant
Sort = Literal["name", "params", "-params", "downloads", "likes", "updated", "license",
               "relevance"]
Source = Literal["seed", "hub", "cache", "local"]
SORTS: tuple[str, ...] = get_args(Sort)
# `score:JOB` sorts by the score measured on a job (best first), beside the fixed sorts.
SCORE_SORT = "score:"
SOURCES: tuple[str, ...] = get_args(Source)
QUANTS: tuple[str, ...] = sizes.QUANTS


class FilterError(UsageError, ValueError):
    """A filter that means nothing. `field` is its name as the HTTP query spells it
    (the CLI option is the same with dashes): the message starts with it."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


@dataclass
class ModelFilter:
    """What to list: every condition holds (values of one list: any of them)."""

    domains: list[str] = field(default_factory=list)
    languages: list[str] = field(default_factory=list)
    min_params: int | None = None
    max_params: int | None = None
    licenses: list[str] = field(default_factory=list)
    fits_bytes: int | None = None
    quant: str | None = None
    search: str | None = None
    source: str | None = None
    sort: str = "name"
    limit: int | None = None
    offset: int = 0
    # Only adapters of one base model: the names it goes by (catalog.plain.adapter_bases).
    adapters_of: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.sort.startswith(SCORE_SORT):
            _score_sort(self.sort)
        else:
            _choice("sort", self.sort, SORTS)
        if self.quant is not None:
            _choice("quant", self.quant, QUANTS)
        if self.source is not None:
            _choice("source", self.source, SOURCES)


def model_filter(*, domains: Iterable[str] = (), languages: Iterable[str] = (),
                 min_params: str | None = None, max_params: str | None = None,
                 licenses: Iterable[str] = (), fits: str | None = None,
                 quant: str | None = None, search: str | None = None,
                 source: str | None = None, sort: str = "name",
                 limit: int | str | None = None, offset: int | str = 0) -> ModelFilter:
    """A ModelFilter from user strings; raises FilterError naming the field. Domains
    and languages are checked here, so an unknown one fails before any query runs."""
    return ModelFilter(
        domains=[_domain(d) for d in domains], languages=[_language(c) for c in languages],
        min_params=parse_params("min_params", min_params),
        max_params=parse_params("max_params", max_params),
        licenses=list(licenses), fits_bytes=parse_memory("fits", fits), quant=quant,
        search=search, source=source, sort=sort,
        limit=None if limit is None else _count("limit", limit, minimum=1),
        offset=_count("offset", offset, minimum=0),
    )


def parse_params(name: str, text: str | None) -> int | None:
    """A parameter count (`7B`, `1.1B`, `350M`); None for no text."""
    if text is None:
        return None
    try:
        return sizes.parse_params(text)
    except ValueError as exc:
        raise FilterError(name, str(exc)) from None


def parse_memory(name: str, text: str | None) -> int | None:
    """Bytes of memory (`24GB`, `512MB`); None for no text."""
    if text is None:
        return None
    try:
        return sizes.parse_memory(text)
    except ValueError as exc:
        raise FilterError(name, str(exc)) from None


def parse_params_range(text: str) -> tuple[int | None, int | None]:
    """`1B-8B`, `-8B`, `7B-`, `<8B`, `>1B` (the TUI's one box for both bounds); blank
    means no bound."""
    text = text.strip().replace(" ", "")
    if not text:
        return None, None
    if text[0] in "<>":
        bound = parse_params("params", text[1:])
        return (None, bound) if text[0] == "<" else (bound, None)
    low, sep, high = text.partition("-")
    if not sep:
        raise FilterError("params", f"not a parameter range: {text!r} (try 1B-8B, <8B or >1B)")
    return parse_params("params", low or None), parse_params("params", high or None)


def _domain(slug: str) -> str:
    try:
        return taxonomy.normalize_domain(slug)
    except taxonomy.TaxonomyError as exc:
        raise FilterError("domain", str(exc)) from None


def _language(code: str) -> str:
    """Checked (a group such as `sea` too), kept as given: the search expands groups."""
    try:
        taxonomy.expand_languages([code])
    except taxonomy.TaxonomyError as exc:
        raise FilterError("language", str(exc)) from None
    return code


def _count(name: str, value: int | str, *, minimum: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise FilterError(name, f"not a whole number: {value!r}") from None
    if number < minimum:
        raise FilterError(name, f"{number} is below {minimum}")
    return number


def _score_sort(value: str) -> None:
    import schemas  # the job-name rule's one owner (reads its JSON Schema once)

    job = value.removeprefix(SCORE_SORT)
    if not schemas.is_job_name(job):
        raise FilterError("sort", f"{value!r}: score: needs a job name (score:JOB)")


def _choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        extra = f", {SCORE_SORT}JOB" if name == "sort" else ""
        raise FilterError(name, f"{value!r} is not one of {', '.join(choices)}{extra}")

"""What Almanac asks the Hub: listings for discovery, one model's description, its model
card and config.json. Requests go out through `catalog.hubhttp` (its rule for refusals,
rate limits and transient failures); answers are checked by `catalog.hubjson` before
huggingface_hub's `ModelInfo` reads them.

A listing whose page cannot be read, and an item of it that does not fit, become a
`Refusal` (reported; the rest go on). Being offline, out of reach, or refused the listing
itself (a bad token) stops everything with a fatal `HubError`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from huggingface_hub import HfApi, hf_hub_url, try_to_load_from_cache
from huggingface_hub.utils import validate_repo_id

from catalog import hubjson
from catalog.hub import FRONT_MATTER, entry_from_model_info, lineage_unsaid
from catalog.hubhttp import HubError, HubHTTP, Sleep, library_calls
from catalog.hubquery import LIST_EXPAND, SORT_ATTRIBUTE, DiscoverQuery

if TYPE_CHECKING:
    from huggingface_hub.hf_api import ModelInfo

    from catalog.records import ModelEntry

log = logging.getLogger(__name__)

# What `model_info` asks for: everything catalog.hub reads. Values `HfApi.model_info`
# documents; `baseModels` is one of those a single model's page accepts and a listing does not.
MODEL_EXPAND = [
    "sha", "cardData", "tags", "pipeline_tag", "safetensors", "gguf", "config",
    "baseModels", "gated", "downloads", "likes", "evalResults",
]
README = "README.md"
CONFIG = "config.json"
# list_models' sort names → the Hub's (huggingface_hub.HfApi.list_models does the same).
_HUB_SORT = {"trending_score": "trendingScore", "created_at": "createdAt", "last_modified": "lastModified"}


@dataclass
class Refusal:
    """A model, or a whole listing, the Hub would not describe, and why; reported."""

    repo_id: str | None
    reason: str
    listing: str | None = None

    def to_json(self) -> dict[str, str]:
        return {k: v for k, v in (("repo_id", self.repo_id), ("listing", self.listing),
                                  ("reason", self.reason)) if v is not None}


# -- listings ---------------------------------------------------------------------------------


def list_models(http: HubHTTP, query: DiscoverQuery) -> Iterator[ModelInfo | Refusal]:
    """The models the Hub lists for `query`, best first by its sort, at most `query.limit`.
    One listing streams page by page; several (a domain's tags, a language group) are
    merged, deduplicated and sorted again before the first is yielded. Refusals come as
    they happen."""
    queries = query.hub_queries()
    if len(queries) == 1:
        yield from _listing(http, queries[0])
        return
    merged: dict[str, ModelInfo] = {}
    for kwargs in queries:
        for found in _listing(http, kwargs):
            if isinstance(found, Refusal):
                yield found
            else:
                merged.setdefault(found.id, found)
    attribute = SORT_ATTRIBUTE[query.sort]
    ranked = sorted(merged.values(), key=lambda i: _sort_key(getattr(i, attribute, None)), reverse=True)
    yield from ranked[:query.limit]


def listing_params(kwargs: dict[str, Any]) -> list[tuple[str, str]]:
    """`HfApi.list_models` arguments as the query it sends (filter, author, search,
    pipeline_tag, num_parameters, sort, limit), plus the listing's `expand`."""
    params: list[tuple[str, str]] = [("filter", f) for f in kwargs.get("filter") or []]
    for name in ("author", "search", "pipeline_tag", "num_parameters"):
        if kwargs.get(name):
            params.append((name, str(kwargs[name])))
    if kwargs.get("sort"):
        params.append(("sort", _HUB_SORT.get(kwargs["sort"], kwargs["sort"])))
    if kwargs.get("limit") is not None:
        params.append(("limit", str(kwargs["limit"])))
    return params + [("expand", e) for e in LIST_EXPAND]


def listing_name(kwargs: dict[str, Any]) -> str:
    """`filter=medical,pl pipeline_tag=text-generation`: a listing as a user typed it."""
    shown = [f"filter={','.join(kwargs['filter'])}"] if kwargs.get("filter") else []
    shown += [f"{k}={kwargs[k]}" for k in ("search", "pipeline_tag", "num_parameters") if kwargs.get(k)]
    return " ".join(shown) or "all models"


def _listing(http: HubHTTP, kwargs: dict[str, Any]) -> Iterator[ModelInfo | Refusal]:
    name = listing_name(kwargs)
    subject = f"the listing {name}"
    url: str | None = f"{http.endpoint}/api/models"
    params: list[tuple[str, str]] | None = listing_params(kwargs)
    limit = kwargs.get("limit")
    seen: set[str] = set()
    page = 0
    try:
        while url and (limit is None or len(seen) < limit):
            page += 1
            items, response = http.json(url, params, subject=subject)
            if not isinstance(items, list):
                raise HubError(subject, f"{subject}: page {page} is {type(items).__name__} "
                                        f"{hubjson.short(items)}, not a list of models")
            for n, item in enumerate(items, 1):
                try:
                    info = hubjson.model_info(item, where=f"item {n} of page {page} of {subject}")
                except hubjson.Garbled as exc:
                    repo_id = item.get("id") if isinstance(item, dict) else None
                    named = isinstance(repo_id, str) and bool(repo_id)
                    yield Refusal(repo_id if named else None, str(exc), listing=None if named else name)
                    continue
                if info.id not in seen and (limit is None or len(seen) < limit):
                    seen.add(info.id)
                    yield info
            # The next page's URL carries the query (the Hub's `Link`, as list_models follows it).
            url, params = response.links.get("next", {}).get("url"), None
    except HubError as exc:
        if exc.fatal or exc.status in (401, 403):  # a token the Hub refuses refuses every listing
            exc.fatal = True
            raise
        yield Refusal(None, f"{exc} ({len(seen)} models read before)", listing=name)


def _sort_key(value: Any) -> tuple[bool, Any]:
    return (value is not None, value if value is not None else 0)


# -- one model ----------------------------------------------------------------------------------


def model_info(http: HubHTTP, repo_id: str, *, revision: str | None = None,
               expand: list[str] = MODEL_EXPAND) -> ModelInfo:
    """One model as the Hub describes it (`HfApi.model_info`'s request); a renamed repo
    answers under its new id (the Hub redirects)."""
    with library_calls():
        try:
            validate_repo_id(repo_id)
        except ValueError as exc:  # HFValidationError
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise HubError(repo_id, f"{repo_id!r} is not a valid Hub repo id: {first}") from None
    url = f"{http.endpoint}/api/models/{repo_id}"
    if revision is not None:
        url += f"/revision/{quote(revision, safe='')}"
    data, _ = http.json(url, [("expand", e) for e in expand], subject=repo_id, revision=revision)
    try:
        return hubjson.model_info(data, where=repo_id)
    except hubjson.Garbled as exc:
        raise HubError(repo_id, str(exc)) from None


def described(http: HubHTTP, repo_id: str) -> ModelInfo | Refusal:
    """`model_info`, or why the Hub would not say (fatal errors still stop everything)."""
    try:
        return model_info(http, repo_id)
    except HubError as exc:
        if exc.fatal:
            raise
        return Refusal(repo_id, str(exc))


def with_lineage(http: HubHTTP, info: ModelInfo) -> ModelInfo:
    """A listed model whose card names a base the Hub's tags say nothing about: its
    `baseModels`, asked of this model alone. If the Hub will not say, the card stands."""
    if not lineage_unsaid(info):
        return info
    try:
        info.base_models = model_info(http, info.id, expand=["baseModels"]).base_models
    except HubError as exc:
        if exc.fatal:
            raise
        log.warning("%s: its base model's relation stays unknown: %s", info.id, exc)
    return info


# -- files --------------------------------------------------------------------------------------


def card(http: HubHTTP, repo_id: str, revision: str | None) -> str:
    """The README body at `revision` ("" when the repo has none). Only the body: the
    metadata came with model_info, so a card whose YAML the Hub tolerates but PyYAML
    rejects cannot fail the import."""
    response = _file(http, repo_id, README, revision)
    if response is None:
        return ""
    content = response.content.decode("utf-8-sig", errors="replace")
    return FRONT_MATTER.sub("", content, count=1)


def config(http: HubHTTP, repo_id: str, revision: str | None) -> dict[str, Any] | None:
    """The repo's config.json at `revision` (None when it has none): from the HF cache when
    that snapshot is downloaded, else from the Hub. Nothing is written to the HF cache: a
    snapshot holding only config.json would pass for a downloaded model."""
    where = f"{repo_id}@{revision}" if revision else repo_id
    if revision:
        with library_calls():
            cached = try_to_load_from_cache(repo_id, CONFIG, revision=revision)
        if isinstance(cached, str):
            try:
                with open(cached, encoding="utf-8") as f:
                    return hubjson.config(json.load(f), where=where)
            except (OSError, ValueError) as exc:
                log.warning("%s: the HF cache's %s is unreadable (%s); asking the Hub", where, CONFIG, exc)
        elif cached is not None:  # the cache knows this revision has no config.json
            return None
    response = _file(http, repo_id, CONFIG, revision)
    if response is None:
        return None
    try:
        data = json.loads(response.content)
    except ValueError as exc:
        raise HubError(repo_id, f"{where}: {CONFIG} is not JSON: {exc}") from None
    try:
        return hubjson.config(data, where=where)
    except hubjson.Garbled as exc:
        raise HubError(repo_id, str(exc)) from None


def _file(http: HubHTTP, repo_id: str, filename: str, revision: str | None) -> Any:
    """A file of the repo, or None when the repo has no such file."""
    url = hf_hub_url(repo_id, filename, revision=revision, endpoint=http.endpoint)
    try:
        return http.get(url, subject=f"{repo_id}'s {filename}")
    except HubError as exc:
        if exc.kind == "entry":
            return None
        raise


def extras(http: HubHTTP, info: ModelInfo, *, want_card: bool, want_config: bool) -> tuple[str, dict[str, Any] | None]:
    """The card and config.json of a described model; one the Hub will not give (gated,
    refused) is left out with a warning, and the model's facts still go in."""
    text, cfg = "", None
    if want_card:
        try:
            text = card(http, info.id, info.sha)
        except HubError as exc:
            if exc.fatal:
                raise
            log.warning("%s: no model card: %s", info.id, exc)
    if want_config and reads_config(info):
        try:
            cfg = config(http, info.id, info.sha)
        except HubError as exc:
            if exc.fatal:
                raise
            log.warning("%s: no context length: %s", info.id, exc)
    return text, cfg


def reads_config(info: ModelInfo) -> bool:
    """Whether config.json says something the API did not: a safetensors model's context
    length. A GGUF file carries its own; an adapter's is its base's."""
    return info.safetensors is not None and not info.gguf and info.library_name != "peft"


def fetch_entry(repo_id: str, *, revision: str | None = None, api: HfApi | None = None,
                sleep: Sleep = time.sleep) -> ModelEntry:
    """Ask the Hub about one model, pinned to the commit it resolves to, with its card and
    its config.json; any refusal is a HubError naming the model and the Hub's reason."""
    http = HubHTTP(api or HfApi(), sleep=sleep)
    info = model_info(http, repo_id, revision=revision)
    text, cfg = extras(http, info, want_card=True, want_config=True)
    try:
        return entry_from_model_info(info, card_text=text, config=cfg)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise HubError(info.id, f"{info.id}: unreadable metadata on the Hub: {exc}") from None

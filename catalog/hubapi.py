"""Talking to the Hub for discovery and refresh: listings, one model at a time, and the
rate limit obeyed.

huggingface_hub already retries a listing page a few times on HTTP 429; when the Hub
keeps refusing, a listing is started again after the wait the Hub asks for (its
`RateLimit` or `Retry-After` header), skipping the models already seen, and a
`model_info` call (which huggingface_hub does not retry) is simply asked again. A model
the Hub refuses (gone, private, disabled, an error of its own) becomes a `Refusal` and
the rest go on; being offline or unable to reach the Hub at all stops everything with a
`HubError` before anything is written.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled
from huggingface_hub.utils import parse_ratelimit_headers

from catalog.hub import EXPAND, HubError, TransportError, card_text, hub_error
from catalog.hubquery import LIST_EXPAND, SORT_ATTRIBUTE, DiscoverQuery

if TYPE_CHECKING:  # the client is built by the caller (the CLI honours HF_ENDPOINT, HF_TOKEN)
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import ModelInfo

log = logging.getLogger(__name__)
MAX_WAITS = 8  # rate-limit waits per listing or per model before giving up
LONGEST_WAIT_S = 300.0

Sleep = Callable[[float], None]


@dataclass
class Refusal:
    """A model the Hub would not describe, and why; reported, never fatal."""

    repo_id: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"repo_id": self.repo_id, "reason": self.reason}


class RateLimitError(HubError):
    """The Hub kept answering 429 after every wait."""


def rate_limit_wait(exc: HfHubHTTPError, attempt: int) -> float:
    """Seconds to wait before asking again: what the Hub's headers say, else doubling."""
    headers = exc.response.headers if exc.response is not None else {}
    info = parse_ratelimit_headers(headers)
    if info is not None and info.remaining == 0:
        return min(float(info.reset_in_seconds), LONGEST_WAIT_S)
    retry_after = str(headers.get("Retry-After", "")).strip()
    if retry_after.isdigit():
        return min(float(retry_after), LONGEST_WAIT_S)
    return min(2.0 ** attempt, LONGEST_WAIT_S)


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _fatal(exc: Exception, what: str, endpoint: str) -> HubError | None:
    """Offline, or the Hub out of reach: nothing can go on."""
    if isinstance(exc, (OfflineModeIsEnabled, TransportError, TimeoutError, ConnectionError)):
        return _described(exc, what, None, endpoint)
    return None


def _described(exc: Exception, what: str, revision: str | None, endpoint: str) -> HubError:
    return hub_error(exc, what, revision, endpoint) or HubError(what, f"{what}: {exc}")


def list_models(api: HfApi, query: DiscoverQuery, *, sleep: Sleep = time.sleep) -> Iterator[ModelInfo]:
    """The models the Hub lists for `query`, best first by its sort, at most `query.limit`.
    One listing streams page by page; several (a domain's tags, a language group) are
    merged, deduplicated and sorted again before the first is yielded."""
    queries = query.hub_queries()
    if len(queries) == 1:
        yield from _listing(api, queries[0], sleep)
        return
    merged: dict[str, ModelInfo] = {}
    for kwargs in queries:
        for info in _listing(api, kwargs, sleep):
            merged.setdefault(info.id, info)
    attribute = SORT_ATTRIBUTE[query.sort]
    ranked = sorted(merged.values(), key=lambda i: _sort_key(getattr(i, attribute, None)), reverse=True)
    yield from ranked[:query.limit]


def _sort_key(value: Any) -> tuple[bool, Any]:
    return (value is not None, value if value is not None else 0)


def _listing(api: HfApi, kwargs: dict[str, Any], sleep: Sleep) -> Iterator[ModelInfo]:
    seen: set[str] = set()
    waits = 0
    while True:
        try:
            for info in api.list_models(**kwargs, expand=LIST_EXPAND):
                if info.id not in seen:
                    seen.add(info.id)
                    yield info
            return
        except Exception as exc:
            if (fatal := _fatal(exc, "models to discover", api.endpoint)) is not None:
                raise fatal from exc
            if not isinstance(exc, HfHubHTTPError):
                raise
            if _status(exc) != 429:
                raise _described(exc, "models to discover", None, api.endpoint) from exc
            waits += 1
            if waits > MAX_WAITS:
                raise RateLimitError("the Hub", f"the Hub kept rate-limiting the listing after "
                                     f"{MAX_WAITS} waits; {len(seen)} models were read") from exc
            wait = rate_limit_wait(exc, waits)
            log.warning("rate-limited by the Hub; resuming the listing in %.0f s", wait)
            sleep(wait)


def model_info(api: HfApi, repo_id: str, *, sleep: Sleep = time.sleep) -> ModelInfo | Refusal:
    """One model as the Hub describes it now, or why the Hub would not say."""
    waits = 0
    while True:
        try:
            return api.model_info(repo_id, expand=EXPAND)
        except Exception as exc:
            if (fatal := _fatal(exc, repo_id, api.endpoint)) is not None:
                raise fatal from exc
            if not isinstance(exc, HfHubHTTPError):
                raise
            if _status(exc) == 429 and waits < MAX_WAITS:
                waits += 1
                wait = rate_limit_wait(exc, waits)
                log.warning("rate-limited by the Hub at %s; asking again in %.0f s", repo_id, wait)
                sleep(wait)
                continue
            return Refusal(repo_id, str(_described(exc, repo_id, None, api.endpoint)))


def model_card(api: HfApi, repo_id: str, revision: str | None) -> str | Refusal:
    """The README body at `revision` ("" when the repo has none)."""
    try:
        return card_text(api, repo_id, revision)
    except Exception as exc:
        if (fatal := _fatal(exc, repo_id, api.endpoint)) is not None:
            raise fatal from exc
        if isinstance(exc, HfHubHTTPError):
            return Refusal(repo_id, str(_described(exc, repo_id, revision, api.endpoint)))
        raise

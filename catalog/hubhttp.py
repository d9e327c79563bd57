"""Requests to the Hub, and one rule for everything that can go wrong on the way.

- Offline (HF_HUB_OFFLINE) or out of reach (connection refused, no such host, no
  connection within CONNECT_TIMEOUT_S): `HubError` at once, marked fatal, nothing retried.
- Transient failures (a 408 or 5xx answer, a connection reset or cut short, a read timeout):
  asked again after 1, 2, 4 s (or the Hub's Retry-After), TRIES times in all, then a
  `HubError` with the last reason.
- Rate limits (429): the wait the Hub's `RateLimit` or `Retry-After` header asks, at most
  MAX_WAITS times; a wait longer than LONGEST_WAIT_S is not waited: the error says how
  long the Hub asked for.
- Any other refusal (400, 401, 404, …): a `HubError` at once with the Hub's whole reason:
  the status, the Hub's `error` text and the request's URL (credentials removed).
- A body that is not JSON where JSON was asked for: a `HubError` saying what came instead.

huggingface_hub's own retries (`http_backoff`, behind `list_models` and file downloads)
try a refused connection for some 23 s and sleep whatever a 429 asks, however long; so
requests go out here, through huggingface_hub's HTTP client (`get_session`: its proxies,
offline switch and request ids) with the headers `HfApi` sends, and refusals are read by
its `hf_raise_for_status` into its error classes.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import huggingface_hub
from huggingface_hub import constants
from huggingface_hub.errors import (
    DisabledRepoError,
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status, parse_ratelimit_headers

from schemas.errors import AlmanacError

try:  # huggingface_hub 2.x speaks httpx2, 1.x httpx
    import httpx2 as httpx
except ImportError:  # pragma: no cover - huggingface_hub 1.x
    import httpx  # type: ignore[no-redef]

if TYPE_CHECKING:  # the client is built by the caller (the CLI honours HF_ENDPOINT, HF_TOKEN)
    from huggingface_hub import HfApi

log = logging.getLogger(__name__)
Sleep = Callable[[float], None]

TRIES = 4  # attempts at a request that fails transiently
BACKOFF_S = 1.0  # the first pause after a transient failure; doubled each time
MAX_WAITS = 8  # rate-limit waits per request before giving up
LONGEST_WAIT_S = 300.0  # the longest rate-limit wait Almanac sits through
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 60.0
TRANSIENT_STATUS = frozenset({408, 500, 502, 503, 504})

_LIBRARY = Path(huggingface_hub.__file__).resolve().parent
_SECRET_PARAMS = ("token", "key", "secret", "password", "signature")


class HubError(AlmanacError):
    """The Hub would not or could not answer; the message names what was asked and why.
    `fatal`: nothing else can be asked either (offline, unreachable, a bad token, the
    client library itself failing), so a discovery or refresh stops; otherwise only the
    model or listing concerned is skipped."""

    def __init__(self, subject: str, message: str, *, status: int | None = None, fatal: bool = False,
                 kind: str | None = None) -> None:
        super().__init__(message)
        self.subject = subject
        self.status = status
        self.fatal = fatal
        self.kind = kind  # what the Hub said is missing: "repo", "revision", "entry" (a file)


class HubHTTP:
    """GET requests to one Hub endpoint as `api` would send them, under the rule above."""

    def __init__(self, api: HfApi, *, sleep: Sleep = time.sleep) -> None:
        self.endpoint = api.endpoint.rstrip("/")
        self.sleep = sleep
        with library_calls():
            self.headers = build_hf_headers(token=api.token, library_name=api.library_name,
                                            library_version=api.library_version,
                                            user_agent=api.user_agent, headers=api.headers)

    def get(self, url: str, params: Any = None, *, subject: str, revision: str | None = None) -> httpx.Response:
        """The answer to GET `url`, once it is a success (2xx, redirects followed)."""
        failures = waits = 0
        while True:
            try:
                with library_calls():
                    response = get_session().get(
                        url, params=params, headers=self.headers, follow_redirects=True,
                        timeout=httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S))
            except OfflineModeIsEnabled:
                raise HubError(subject, f"cannot ask the Hub about {subject}: offline mode is on "
                                        "(HF_HUB_OFFLINE); `almanac models scan-cache` adds models "
                                        "already downloaded", fatal=True) from None
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.ProxyError,
                    httpx.UnsupportedProtocol) as exc:
                raise HubError(subject, f"cannot reach the Hub at {self.endpoint} for {subject}: "
                                        f"{_first_line(exc)}", fatal=True) from None
            except httpx.TransportError as exc:  # reset, cut short, timed out while reading
                failures += 1
                if failures >= TRIES:
                    sent = str(httpx.URL(url, params=params))
                    raise HubError(subject, f"the Hub did not answer {subject} in {TRIES} tries: "
                                            f"{_first_line(exc)} (GET {redact(sent)})") from None
                self._pause(backoff(failures), f"{_first_line(exc)} for {subject}")
                continue
            status = response.status_code
            if status == 429:
                waits += 1
                wait = rate_limit_wait(response.headers, waits)
                if wait > LONGEST_WAIT_S or waits > MAX_WAITS:
                    asked = (f"asks to wait {wait:,.0f} s, longer than the {LONGEST_WAIT_S:.0f} s Almanac "
                             "waits" if wait > LONGEST_WAIT_S else f"still refuses after {MAX_WAITS} waits")
                    raise HubError(subject, f"the Hub rate-limits {subject} and {asked}; try again "
                                            f"later ({reason(response)})", status=status)
                self._pause(wait, f"rate-limited by the Hub for {subject}")
                continue
            if status in TRANSIENT_STATUS:
                failures += 1
                if failures < TRIES:
                    asked = retry_after(response.headers)
                    self._pause(min(backoff(failures) if asked is None else asked, LONGEST_WAIT_S),
                                f"the Hub answered {status} for {subject}")
                    continue
            if status >= 400:
                raise refusal(response, subject, revision)
            return response

    def json(self, url: str, params: Any = None, *, subject: str,
             revision: str | None = None) -> tuple[Any, httpx.Response]:
        """The answer's JSON, and the answer (its headers, its final URL)."""
        response = self.get(url, params, subject=subject, revision=revision)
        try:
            return json.loads(response.content), response
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise HubError(subject, f"{subject}: the Hub's answer is not JSON ({_body(response)}): "
                                    f"{exc} (GET {redact(str(response.url))})") from None

    def _pause(self, seconds: float, why: str) -> None:
        log.warning("%s; asking again in %.0f s", why, seconds)
        self.sleep(seconds)


def backoff(failures: int) -> float:
    return min(BACKOFF_S * 2 ** (failures - 1), 8 * BACKOFF_S)


def retry_after(headers: Any) -> float | None:
    value = str(headers.get("Retry-After", "")).strip()
    return float(value) if value.isdigit() else None  # an HTTP date is not honoured


def rate_limit_wait(headers: Any, waits: int) -> float:
    """Seconds the Hub asks us to wait: its `RateLimit` header when the window is spent
    (huggingface_hub reads it the same way), else `Retry-After`, else doubling."""
    info = parse_ratelimit_headers(headers)
    if info is not None and info.remaining == 0:
        return float(info.reset_in_seconds)
    asked = retry_after(headers)
    return float(min(2 ** waits, 60)) if asked is None else asked


def refusal(response: httpx.Response, subject: str, revision: str | None = None) -> HubError:
    """A 4xx or 5xx answer as one line: what it means for `subject`, then the Hub's reason."""
    error = _read_refusal(response)
    why = reason(response)
    kind = None
    # Order matters: GatedRepoError is a RepositoryNotFoundError.
    if isinstance(error, GatedRepoError):
        msg = (f"{subject} is gated on the Hub: accept its terms on huggingface.co, then log in "
               f"(`hf auth login`) or set HF_TOKEN ({why})")
    elif isinstance(error, RepositoryNotFoundError):
        msg = (f"{subject}: no such model on the Hub (if it is private, log in with "
               f"`hf auth login` or set HF_TOKEN) ({why})")
        kind = "repo"
    elif isinstance(error, RevisionNotFoundError):
        msg, kind = f"{subject}: the Hub has no revision {revision!r} ({why})", "revision"
    elif isinstance(error, EntryNotFoundError):
        msg, kind = f"{subject}: no such file on the Hub ({why})", "entry"
    elif isinstance(error, DisabledRepoError):
        msg = f"{subject} is disabled on the Hub ({why})"
    else:
        msg = f"the Hub refused {subject}: {why}"
    return HubError(subject, msg, status=response.status_code, kind=kind)


def _read_refusal(response: httpx.Response) -> HfHubHTTPError | None:
    """huggingface_hub's reading of a refusal: its error class and the Hub's own words."""
    try:
        hf_raise_for_status(response)
    except HfHubHTTPError as exc:
        return exc
    return None


def reason(response: httpx.Response) -> str:
    """`404 Not Found: Repository not found (GET https://…)`: the status, the Hub's own
    words (its `error` field or X-Error-Message header, as huggingface_hub gathers them),
    and the request."""
    words = getattr(_read_refusal(response), "server_message", None)
    if not words and not _is_html(response):
        words = response.text.strip()[:300]
    said = f": {' '.join(str(words).split())}" if words else ""
    request = response.request
    return f"{response.status_code} {response.reason_phrase}{said} ({request.method} {redact(str(request.url))})"


def redact(url: str) -> str:
    """A URL fit to print: no user or password, no query parameter that carries a secret."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
             if not any(word in k.lower() for word in _SECRET_PARAMS)]
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query, safe=":,/"), ""))


@contextmanager
def library_calls() -> Iterator[None]:
    """A failure inside huggingface_hub's own code (not an answer from the Hub) as one line:
    e.g. a file under its home it cannot read makes every one of its calls raise."""
    try:
        yield
    except (AlmanacError, HfHubHTTPError, OfflineModeIsEnabled, httpx.HTTPError):
        raise
    except Exception as exc:
        if (failure := library_failure(exc)) is not None:
            raise failure from exc
        raise


def library_failure(exc: BaseException) -> HubError | None:
    """`exc` as a fatal HubError when it was raised inside huggingface_hub, else None."""
    tb, where = exc.__traceback__, None
    while tb is not None:
        where, tb = tb.tb_frame.f_code.co_filename, tb.tb_next
    if where is None or not Path(where).resolve().is_relative_to(_LIBRARY):
        return None
    inside = Path(where).resolve().relative_to(_LIBRARY.parent).as_posix()
    return HubError("huggingface_hub", (
        f"huggingface_hub failed in its own code ({type(exc).__name__}: {_first_line(exc)}, in {inside}); "
        f"a damaged file under its home ({constants.HF_HOME}) can cause this: move it away and retry"),
        fatal=True)


def _is_html(response: httpx.Response) -> bool:
    return "html" in response.headers.get("Content-Type", "").lower()


def _body(response: httpx.Response) -> str:
    kind = response.headers.get("Content-Type") or "no content type"
    start = response.content[:60].decode("utf-8", "replace")
    return f"{response.status_code}, {kind}, {len(response.content):,} bytes starting {start!r}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]

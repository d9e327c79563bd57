"""`almanac serve`: a read-only JSON API over the catalog and the cached predictions.

Built by `make_app(home)`, shared by the CLI and the tests. Every endpoint
reads; the one POST (a batch lookup, whose ids would not fit in a URL) reads
too. Page sizes, batch sizes, string lengths and request bodies are bounded,
and every error is a JSON `Error` with a 4xx status (503 when the cache or
the catalog is unusable), never a traceback. The prediction index is opened
read-only in WAL mode, so a run writing new shards is never blocked and its
shards are visible as soon as its index transaction commits; the catalog is
opened read-only too.

The package: `app` builds the application and its uvicorn configuration,
`limits` bounds requests, `payloads` holds what the API takes and answers (the
OpenAPI schema), `errors` turns every failure into an `Error`, and
`catalog_routes` / `prediction_routes` hold the endpoints. Under `/v1/` the server
speaks OpenAI's API (`openai_routes`, `openai_payloads`, `openai_errors`): completions
answered from the cache by content key, and what it could not answer recorded (the one
thing the server writes, beside the shards: `predictions/misses.db`).
"""

from __future__ import annotations

from almanac.server.app import make_app, server_config
from almanac.server.limits import MAX_BATCH, MAX_BODY

__all__ = ["MAX_BATCH", "MAX_BODY", "make_app", "server_config"]

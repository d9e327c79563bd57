"""A stand-in for the Hugging Face Hub's model API, served over real HTTP on 127.0.0.1.

It answers the requests huggingface_hub's `HfApi` makes, in the Hub's shapes:

- `GET /api/models?filter=…&search=…&pipeline_tag=…&num_parameters=min:7B,max:13B&sort=…
  &limit=…&expand=…` — the listing: every `filter` value must be one of the model's tags
  (the Hub ANDs them), `search` is a substring of the id, pages are cut at `limit` (at
  most 1,000) and chained with a `Link: <…>; rel="next"` header carrying a cursor, as the
  Hub paginates. With `expand`, an item holds `_id`, `id` and the expanded properties only.
- `GET /api/models/{repo}` and `/api/models/{repo}/revision/{rev}` — one model (404 with
  `X-Error-Code: RepoNotFound` for an unknown or refused repo, as the Hub answers).
- `GET /{repo}/resolve/{rev}/README.md` — the model card.

Tests script trouble with `fail_next` (answer the next requests to a path with these
statuses first, e.g. a 429 with `Retry-After: 0`) and `refuse` (repos answered 404). Every
request is recorded (method, path, decoded query, headers) so a test can assert what was
sent. Used by the discovery tests and by `bench/discovery.py`.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

MAX_PAGE = 1000
# What the Hub returns for an item when the request names no `expand`.
DEFAULT_PROPERTIES = ("likes", "trendingScore", "private", "downloads", "tags", "pipeline_tag",
                      "library_name", "createdAt")
SORT_KEYS = {"downloads": "downloads", "likes": "likes", "trendingScore": "trendingScore",
             "createdAt": "createdAt", "lastModified": "lastModified"}
_SCALE = {"K": 10**3, "M": 10**6, "B": 10**9, "T": 10**12}


@dataclass
class Seen:
    """One request as the stand-in received it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # names in lower case


@dataclass
class HubStandIn:
    models: dict[str, dict[str, Any]] = field(default_factory=dict)  # repo id -> full API JSON
    readmes: dict[str, str] = field(default_factory=dict)
    refuse: set[str] = field(default_factory=set)
    page_size: int = MAX_PAGE
    record: bool = True
    url: str = ""  # set while served
    requests: list[Seen] = field(default_factory=list)
    _failures: dict[str, list[tuple[int, dict[str, str]]]] = field(
        default_factory=lambda: defaultdict(list))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, *items: dict[str, Any]) -> None:
        for item in items:
            self.models[item["id"]] = item

    def fail_next(self, path: str, status: int, times: int = 1, headers: dict[str, str] | None = None,
                  after: int = 0) -> None:
        """Answer `times` requests whose path starts with `path` with `status`, once
        `after` such requests have been answered normally (a listing's later page)."""
        with self._lock:
            self._failures[path].extend([(0, {})] * after + [(status, headers or {})] * times)

    def listings(self) -> list[Seen]:
        return [r for r in self.requests if r.path == "/api/models"]

    # -- answers ---------------------------------------------------------------------------

    def _scripted_failure(self, path: str) -> tuple[int, dict[str, str]] | None:
        with self._lock:
            for prefix, queue in self._failures.items():
                if path.startswith(prefix) and queue:
                    status, headers = queue.pop(0)
                    return (status, headers) if status else None  # 0: answer this one normally
        return None

    def answer(self, method: str, raw_path: str, headers: dict[str, str],
               base: str) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(raw_path)
        query = parse_qs(parts.query, keep_blank_values=True)
        if self.record:
            with self._lock:
                self.requests.append(Seen(method, parts.path, query, {k.lower(): v for k, v in headers.items()}))
        if (failure := self._scripted_failure(parts.path)) is not None:
            status, extra = failure
            return status, {"Content-Type": "application/json", **extra}, b'{"error": "scripted"}'
        if parts.path == "/api/models":
            return self._listing(query, base)
        if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/(.+))?", parts.path):
            return self._model(m[1])
        if m := re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/README\.md", parts.path):
            text = self.readmes.get(m[1])
            if text is None or m[1] in self.refuse:
                return 404, {"X-Error-Code": "EntryNotFound"}, b""
            body = text.encode()
            # The Hub's ETag for a file kept in git is its blob's hash.
            return 200, {"ETag": f'"{hashlib.sha1(body).hexdigest()}"', "X-Repo-Commit": m[2]}, body
        return 404, {}, b""

    def _model(self, repo_id: str) -> tuple[int, dict[str, str], bytes]:
        data = self.models.get(repo_id)
        if data is None or repo_id in self.refuse:
            return 404, {"X-Error-Code": "RepoNotFound", "Content-Type": "application/json"}, \
                b'{"error":"Repository not found"}'
        return 200, {"Content-Type": "application/json"}, json.dumps(data).encode()

    def _listing(self, query: dict[str, list[str]], base: str) -> tuple[int, dict[str, str], bytes]:
        found = [m for m in self.models.values() if self._matches(m, query)]
        sort = SORT_KEYS.get(query.get("sort", [""])[0])
        if sort:
            # Highest first, as the Hub sorts; a model without the property last.
            found.sort(key=lambda m: (m.get(sort) is not None, m.get(sort) or 0), reverse=True)
        limit = int(query.get("limit", [MAX_PAGE])[0])
        size = max(1, min(limit, self.page_size, MAX_PAGE))
        start = int(query.get("cursor", ["0"])[0])
        page = found[start:start + size]
        expand = query.get("expand")
        body = json.dumps([_shape(m, expand) for m in page]).encode()
        headers = {"Content-Type": "application/json"}
        if start + size < len(found):
            nxt = {k: v for k, v in query.items() if k != "cursor"} | {"cursor": [str(start + size)]}
            headers["Link"] = f'<{base}/api/models?{urlencode(nxt, doseq=True)}>; rel="next"'
        return 200, headers, body

    def _matches(self, model: dict[str, Any], query: dict[str, list[str]]) -> bool:
        tags = set(model.get("tags") or [])
        if any(value not in tags for value in query.get("filter", [])):
            return False
        if (search := query.get("search", [""])[0]) and search.lower() not in model["id"].lower():
            return False
        if (author := query.get("author", [""])[0]) and not model["id"].startswith(author + "/"):
            return False
        if (task := query.get("pipeline_tag", [""])[0]) and model.get("pipeline_tag") != task:
            return False
        if (gated := query.get("gated", [""])[0]) and bool(model.get("gated")) != (gated == "true"):
            return False
        if rng := query.get("num_parameters", [""])[0]:
            total = (model.get("safetensors") or {}).get("total") or (model.get("gguf") or {}).get("total")
            low, high = _parameter_range(rng)
            if total is None or (low is not None and total < low) or (high is not None and total > high):
                return False
        return True


def _parameter_range(text: str) -> tuple[int | None, int | None]:
    """`min:6B,max:128B` as the Hub reads it."""
    bounds: dict[str, int] = {}
    for part in text.split(","):
        key, _, value = part.partition(":")
        m = re.fullmatch(r"(\d+(?:\.\d+)?)([KMBT]?)", value.strip(), re.IGNORECASE)
        if not m or key not in ("min", "max"):
            raise ValueError(f"bad num_parameters {text!r}")
        bounds[key] = int(Decimal(m[1]) * _SCALE.get(m[2].upper(), 1))
    return bounds.get("min"), bounds.get("max")


def _shape(model: dict[str, Any], expand: list[str] | None) -> dict[str, Any]:
    keys = expand if expand is not None else DEFAULT_PROPERTIES
    out = {"_id": model.get("_id", model["id"]), "id": model["id"]}
    out.update({k: model[k] for k in keys if k in model})
    return out


class _Handler(BaseHTTPRequestHandler):
    hub: HubStandIn
    protocol_version = "HTTP/1.1"  # keep-alive, as huggingface_hub's client expects

    def do_GET(self) -> None:
        self._reply(body=True)

    def do_HEAD(self) -> None:
        self._reply(body=False)

    def _reply(self, body: bool) -> None:
        base = f"http://{self.headers.get('Host')}"
        status, headers, payload = self.hub.answer(self.command, self.path, dict(self.headers), base)
        self.send_response(status)
        for key, value in {**headers, "Content-Length": str(len(payload))}.items():
            self.send_header(key, value)
        self.end_headers()
        if body:
            self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass  # the test output keeps to what failed


class Served:
    """The stand-in listening on 127.0.0.1 in a thread; `url` is what HF_ENDPOINT gets."""

    def __init__(self, hub: HubStandIn) -> None:
        handler = type("Handler", (_Handler,), {"hub": hub})
        self.hub = hub
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.url = hub.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Served:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()


def hub_model(repo_id: str, *, sha: str, tags: list[str], languages: list[str], parameters: int | None,
              license: str = "apache-2.0", pipeline_tag: str | None = "text-generation",
              base_model: str | None = None, relation: str | None = None, gated: bool | str = False,
              downloads: int = 0, likes: int = 0, created: str = "2025-03-01T10:00:00.000Z",
              trending: int = 0, evals: list[tuple[str, str, float]] | None = None,
              architecture: str = "LlamaForCausalLM") -> dict[str, Any]:
    """One model as the Hub's API describes it (`model_info` / `list_models` with expand):
    the keys, nesting and value types of its JSON — tags carry the language codes, the
    license and the model tree's `base_model:<relation>:<id>`, as the Hub derives them."""
    hub_tags = ["transformers", "safetensors", *tags, *languages, f"license:{license}", "region:us"]
    if pipeline_tag:
        hub_tags.insert(2, pipeline_tag)
    card: dict[str, Any] = {"language": languages, "license": license, "tags": tags}
    if base_model:
        card["base_model"] = base_model
        hub_tags.append(f"base_model:{relation or 'finetune'}:{base_model}")
        if relation:
            card["base_model_relation"] = relation
    if evals:
        card["model-index"] = [{"name": repo_id.split("/")[1], "results": [
            {"task": {"type": "text-generation"}, "dataset": {"name": name, "type": name.lower()},
             "metrics": [{"type": metric, "value": value}],
             "source": {"name": "Model card", "url": f"https://huggingface.co/{repo_id}"}}
            for name, metric, value in evals]}]
    data: dict[str, Any] = {
        "_id": sha[:24], "id": repo_id, "author": repo_id.split("/")[0], "sha": sha,
        "lastModified": created, "createdAt": created, "private": False, "disabled": False,
        "gated": gated, "downloads": downloads, "likes": likes, "trendingScore": trending,
        "library_name": "peft" if relation == "adapter" else "transformers", "tags": hub_tags,
        "cardData": card,
        "config": {"architectures": [architecture], "model_type": "llama",
                   "max_position_embeddings": 4096, "torch_dtype": "bfloat16"},
    }
    if pipeline_tag:
        data["pipeline_tag"] = pipeline_tag
    if parameters is not None:
        data["safetensors"] = {"parameters": {"BF16": parameters}, "total": parameters}
    if base_model:
        data["baseModels"] = {"relation": relation or "finetune", "models": [{"id": base_model}]}
    return data


def synthetic_models(n: int, *, seed: int = 0) -> list[dict[str, Any]]:
    """`n` plausible models for the discovery benchmark, each in the Hub's shape."""
    import random

    rng = random.Random(seed)
    domains = ["medical", "legal", "finance", "code", "sql", "math", "education", "chemistry", None]
    languages = ["en", "de", "fr", "es", "pl", "th", "ja", "zh", "ar", "hi", "sw", "ko"]
    out = []
    for i in range(n):
        tag = rng.choice(domains)
        langs = sorted({rng.choice(languages) for _ in range(rng.choice((1, 1, 2)))})
        out.append(hub_model(
            f"org{i % 97}/model-{i}", sha=f"{i:040x}", tags=[tag] if tag else [], languages=langs,
            parameters=rng.choice((350_000_000, 1_100_000_000, 7_241_732_096, 8_030_261_248)),
            base_model=f"base/{rng.choice(('llama', 'mistral', 'qwen'))}-7b", relation="finetune",
            downloads=rng.randrange(10**6), likes=rng.randrange(1000), trending=rng.randrange(100),
            evals=[("MMLU", "accuracy", round(rng.random(), 3))] if i % 5 == 0 else None))
    return out

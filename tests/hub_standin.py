"""A stand-in for the Hugging Face Hub's model API, served over real HTTP on 127.0.0.1, as
strict as the Hub: what the Hub refuses, it refuses. Each behaviour names its source: a
response recorded from the Hub (tests/fixtures/hub/, see provenance.json there) or the
huggingface_hub code that reads it. Where the Hub's exact words are not on record, the
status and error code are, and the words are the stand-in's own (said so below).

- `GET /api/models?filter=…&search=…&pipeline_tag=…&num_parameters=…&sort=…&limit=…&expand=…`
  the listing, pages chained by `Link` headers.
- `GET /api/models/{repo}` and `/api/models/{repo}/revision/{rev}`: one model.
- `GET|HEAD /{repo}/resolve/{rev}/{file}`: README.md (`readmes`) and config.json (`configs`).

Tests script trouble with `fail_next` (the next answers to a path: a status with headers
and a body, e.g. a 429 with `Retry-After: 0`, or a 200 with an HTML page) and `cut_next`
(the connection closed halfway through the answer). Every request is recorded (method,
path, decoded query, headers) so a test can assert what was sent. Used by the discovery
tests and by `bench/discovery.py`.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

FIXTURES = Path(__file__).parent / "fixtures" / "hub"
MAX_PAGE = 1000
# What the Hub returns for a listing item when the request names no `expand`.
DEFAULT_PROPERTIES = ("likes", "trendingScore", "private", "downloads", "tags", "pipeline_tag",
                      "library_name", "createdAt")
SORT_KEYS = {"downloads": "downloads", "likes": "likes", "trendingScore": "trendingScore",
             "createdAt": "createdAt", "lastModified": "lastModified"}
_SCALE = {"K": 10**3, "M": 10**6, "B": 10**9, "T": 10**12}
JSON = {"Content-Type": "application/json; charset=utf-8"}


@cache
def documented_expand(method: str) -> frozenset[str]:
    """The `expand` values the installed huggingface_hub documents for `HfApi.<method>`:
    `list_models` documents those the Hub accepts on listings (it dropped `baseModels`,
    `childrenModelCount` and `usedStorage` when the Hub was found to refuse them there,
    huggingface_hub PR 3182); `model_info` documents those of one model's page."""
    from huggingface_hub import HfApi

    doc = getattr(HfApi, method).__doc__ or ""
    block = doc[doc.index("expand ("):]
    line = next(ln for ln in block.splitlines() if "Possible values are" in ln)
    return frozenset(re.findall(r'`"([^"`]+)"`', line))


@dataclass
class Seen:
    """One request as the stand-in received it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # names in lower case


@dataclass
class Scripted:
    status: int
    headers: dict[str, str]
    body: bytes
    cut: bool = False  # close the connection halfway through the body


@dataclass
class HubStandIn:
    models: dict[str, dict[str, Any]] = field(default_factory=dict)  # repo id -> full API JSON
    readmes: dict[str, str] = field(default_factory=dict)
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)  # repo id -> config.json
    renamed: dict[str, str] = field(default_factory=dict)  # old repo id -> new
    refuse: set[str] = field(default_factory=set)
    page_size: int = MAX_PAGE
    record: bool = True
    url: str = ""  # set while served
    requests: list[Seen] = field(default_factory=list)
    _scripts: dict[str, list[Scripted | None]] = field(default_factory=lambda: defaultdict(list))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, *items: dict[str, Any]) -> None:
        for item in items:
            self.models[item["id"]] = item

    def fail_next(self, path: str, status: int, times: int = 1, headers: dict[str, str] | None = None,
                  after: int = 0, body: bytes | None = None) -> None:
        """Answer `times` requests whose path starts with `path` with `status` (and `body`,
        by default the Hub's JSON error shape), once `after` such requests were answered."""
        payload = body if body is not None else json.dumps({"error": f"scripted {status}"}).encode()
        kinds = {"Content-Type": "application/json"} if body is None else {}
        self._script(path, Scripted(status, {**kinds, **(headers or {})}, payload), times, after)

    def cut_next(self, path: str, times: int = 1, after: int = 0) -> None:
        """Close the connection halfway through the next answers' bodies (a reset)."""
        self._script(path, Scripted(0, {}, b"", cut=True), times, after)

    def _script(self, path: str, scripted: Scripted, times: int, after: int) -> None:
        with self._lock:
            self._scripts[path].extend([None] * after + [scripted] * times)

    def listings(self) -> list[Seen]:
        return [r for r in self.requests if r.path == "/api/models"]

    def _scripted(self, path: str) -> Scripted | None:
        with self._lock:
            for prefix, queue in self._scripts.items():
                if path.startswith(prefix) and queue:
                    return queue.pop(0)
        return None

    # -- answers ---------------------------------------------------------------------------

    def answer(self, method: str, raw_path: str, headers: dict[str, str],
               base: str) -> tuple[int, dict[str, str], bytes, bool]:
        parts = urlsplit(raw_path)
        path = unquote(parts.path)
        query = parse_qs(parts.query, keep_blank_values=True)
        lower = {k.lower(): v for k, v in headers.items()}
        if self.record:
            with self._lock:
                self.requests.append(Seen(method, path, query, lower))
        scripted = self._scripted(path)
        cut = scripted is not None and scripted.cut
        if scripted is not None and not cut:
            return scripted.status, scripted.headers, scripted.body, False
        token = lower.get("authorization", "").startswith("Bearer ")
        if path == "/api/models":
            status, out, body = self._listing(query, base)
        elif m := re.fullmatch(r"/api/models/([^/]+(?:/[^/]+)?)(?:/revision/(.+))?", path):
            status, out, body = self._model(m[1], m[2], query, token)
        elif m := re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):
            status, out, body = self._file(m[1], m[2], m[3], token)
        else:
            status, out, body = 404, JSON, b'{"error":"Not Found"}'
        return status, out, body, cut

    def _listing(self, query: dict[str, list[str]], base: str) -> tuple[int, dict[str, str], bytes]:
        expand = query.get("expand")
        if expand is not None:
            # huggingface_hub's list_models docstring: expand "cannot be used if full,
            # cardData or fetch_config are passed"; and only its documented values are
            # accepted (PR 3182). Status 400 and the `error` field are what
            # hf_raise_for_status reads (BadRequestError); the words are ours.
            if clash := [k for k in ("full", "cardData", "config") if k in query]:
                return _error(400, f'"expand" cannot be used with {clash[0]}')
            if refused := [e for e in expand if e not in documented_expand("list_models")]:
                return _error(400, f'"expand" must be one of the listing\'s properties, not {refused[0]!r}')
        found = [m for m in self.models.values() if self._matches(m, query)]
        sort = SORT_KEYS.get(query.get("sort", [""])[0])
        if sort:
            # Highest first, as the Hub sorts; a model without the property last.
            found.sort(key=lambda m: (m.get(sort) is not None, m.get(sort) or 0), reverse=True)
        limit = int(query.get("limit", [MAX_PAGE])[0])
        size = max(1, min(limit, self.page_size, MAX_PAGE))
        start = int(query.get("cursor", ["0"])[0])
        page = found[start:start + size]
        body = json.dumps([_shape(m, expand, DEFAULT_PROPERTIES) for m in page]).encode()
        headers = dict(JSON)
        if start + size < len(found):
            # Pages are chained as GitHub chains them: `Link: <url>; rel="next"`, the URL
            # carrying the whole query (huggingface_hub's _paginate_pages follows it as is).
            nxt = {k: v for k, v in query.items() if k != "cursor"} | {"cursor": [str(start + size)]}
            headers["Link"] = f'<{base}/api/models?{urlencode(nxt, doseq=True)}>; rel="next"'
        return 200, headers, body

    def _matches(self, model: dict[str, Any], query: dict[str, list[str]]) -> bool:
        tags = set(model.get("tags") or [])
        if any(value not in tags for value in query.get("filter", [])):
            return False  # the Hub ANDs the filters of one request
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

    def _missing(self, repo_id: str, token: bool) -> tuple[int, dict[str, str], bytes]:
        # Unknown (or private) repos: 401 without a token, 404 with one, both with
        # `X-Error-Code: RepoNotFound` (hf_raise_for_status reads either as
        # RepositoryNotFoundError and says why 401 is sent for missing repos).
        if token:
            return _error(404, "Repository not found", "RepoNotFound")
        return _error(401, "Invalid username or password.", "RepoNotFound")

    def _model(self, repo_id: str, revision: str | None, query: dict[str, list[str]],
               token: bool) -> tuple[int, dict[str, str], bytes]:
        if repo_id in self.renamed:
            # As recorded (t5-small, bert-base-uncased, meta-llama/Meta-Llama-3.1-8B-Instruct):
            # 307, a path-only Location on the same host, a plain-text body.
            where = f"/api/models/{self.renamed[repo_id]}" + (f"/revision/{revision}" if revision else "")
            return 307, {"Location": where, "Content-Type": "text/plain; charset=utf-8"}, \
                f"Temporary Redirect. Redirecting to {where}".encode()
        data = self.models.get(repo_id)
        if data is None or repo_id in self.refuse:
            return self._missing(repo_id, token)
        if revision is not None and revision not in ("main", data.get("sha")):
            # hf_raise_for_status: `X-Error-Code: RevisionNotFound` (the words are ours).
            return _error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        expand = query.get("expand")
        if expand is not None and (refused := [e for e in expand if e not in documented_expand("model_info")]):
            return _error(400, f'"expand" must be one of the model\'s properties, not {refused[0]!r}')
        # Recorded: with expand, the answer holds `_id`, `id` and the asked properties only
        # (meta-llama--Llama-3.1-8B-Instruct.inferenceProviderMapping.json); without, everything.
        return 200, dict(JSON), json.dumps(_shape(data, expand, None)).encode()

    def _file(self, repo_id: str, revision: str, filename: str,
              token: bool) -> tuple[int, dict[str, str], bytes]:
        if repo_id in self.renamed:
            where = f"/{self.renamed[repo_id]}/resolve/{revision}/{filename}"
            return 307, {"Location": where, "Content-Type": "text/plain; charset=utf-8"}, b""
        data = self.models.get(repo_id)
        if data is None or repo_id in self.refuse:
            return self._missing(repo_id, token)
        if data.get("gated") and not token:
            # A gated repo's files need a token that accepted its terms: `X-Error-Code:
            # GatedRepo` (hf_raise_for_status's GatedRepoError); the words are ours.
            return _error(401, f"Access to model {repo_id} is restricted. You must have access to it "
                               "and be authenticated to access it. Please log in.", "GatedRepo")
        if filename == "README.md" and repo_id in self.readmes:
            body = self.readmes[repo_id].encode()
        elif filename == "config.json" and repo_id in self.configs:
            body = json.dumps(self.configs[repo_id]).encode()
        else:
            return _error(404, "Entry not found", "EntryNotFound")
        # The Hub's ETag for a file kept in git is its blob's hash; X-Repo-Commit the commit.
        return 200, {"ETag": f'"{hashlib.sha1(body).hexdigest()}"', "X-Repo-Commit": data.get("sha") or revision,
                     "Content-Type": "text/plain; charset=utf-8"}, body


def _error(status: int, message: str, code: str | None = None) -> tuple[int, dict[str, str], bytes]:
    headers = dict(JSON) | ({"X-Error-Code": code} if code else {})
    return status, headers, json.dumps({"error": message}).encode()


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


def _shape(model: dict[str, Any], expand: list[str] | None, default: tuple[str, ...] | None) -> dict[str, Any]:
    keys = expand if expand is not None else default
    if keys is None:
        return model
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
        status, headers, payload, cut = self.hub.answer(self.command, self.path, dict(self.headers), base)
        if cut:  # promise a body, send half of it, hang up
            payload = b'[{"_id": "cut", "id": "cut/short", "tags": ["a", "b", "c", "d"]}]'
            status, headers = 200, dict(JSON)
        self.send_response(status)
        for key, value in {**headers, "Content-Length": str(len(payload))}.items():
            self.send_header(key, value)
        self.end_headers()
        if body:
            self.wfile.write(payload[: len(payload) // 2] if cut else payload)
        if cut:
            self.close_connection = True

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


def recorded() -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The recorded `/api/models/{id}` bodies (as parsed JSON) and renames (old id -> new)."""
    provenance = json.loads((FIXTURES / "provenance.json").read_text())
    bodies = [json.loads((FIXTURES / b["file"]).read_text(encoding="utf-8")) for b in provenance["bodies"]]
    renames = {r["from"]: r["location"].removeprefix("/api/models/") for r in provenance["redirects"]}
    return bodies, renames


def hub_model(repo_id: str, *, sha: str, tags: list[str], languages: list[str], parameters: int | None,
              license: str = "apache-2.0", pipeline_tag: str | None = "text-generation",
              base_model: str | None = None, relation: str | None = None, gated: bool | str = False,
              downloads: int = 0, likes: int = 0, created: str = "2025-03-01T10:00:00.000Z",
              trending: int = 0, evals: list[tuple[str, str, float]] | None = None,
              architecture: str = "LlamaForCausalLM") -> dict[str, Any]:
    """One model as the Hub's API describes it (`model_info` / `list_models` with expand):
    the keys, nesting and value types of the recorded bodies — tags carry the language
    codes, the license and the model tree's `base_model:<id>` and
    `base_model:<relation>:<id>`, as the Hub derives them; `config` is the API's trimmed one
    (architectures and model type: the context length is in the repo's config.json)."""
    hub_tags = ["transformers", "safetensors", *tags, *languages, f"license:{license}", "region:us"]
    if pipeline_tag:
        hub_tags.insert(2, pipeline_tag)
    card: dict[str, Any] = {"language": languages, "license": license, "tags": tags}
    if base_model:
        card["base_model"] = base_model
        hub_tags += [f"base_model:{base_model}", f"base_model:{relation or 'finetune'}:{base_model}"]
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
        "cardData": card, "config": {"architectures": [architecture], "model_type": "llama"},
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

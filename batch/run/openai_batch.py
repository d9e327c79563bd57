"""OpenAI / vLLM batch request lines, read as their tools write them.

A line is `{"custom_id", "method": "POST", "url", "body"}`. The `url` decides the
endpoint: `/v1/chat/completions` takes `messages`, `/v1/completions` a `prompt`,
and each is answered in its own response shape on export. A body is honoured field
by field, mapped onto Almanac's sampling parameters (`response_format` becomes a
structured-output constraint, `logprobs` / `top_logprobs` the log-probabilities
kept); a field Almanac cannot honour makes the line an error line naming it, never
a silently different answer. Fields that cannot change an answer (`user`,
`metadata`, `store`, ...) are accepted. `body.model` is read by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
ENDPOINTS = (CHAT, COMPLETIONS)

# Body fields with the same meaning as Almanac's sampling parameter of that name. The
# last three are vLLM's extensions, which `vllm run-batch` takes too.
_SAME = ("temperature", "top_p", "seed", "n", "presence_penalty", "frequency_penalty",
         "top_k", "min_p", "repetition_penalty")
# Fields that cannot change an answer: bookkeeping for OpenAI's own service.
_HARMLESS = frozenset({"model", "user", "metadata", "store", "service_tier", "safety_identifier",
                       "prompt_cache_key", "prompt_cache_options", "prompt_cache_retention"})
_CHAT_FIELDS = frozenset({"messages", "max_tokens", "max_completion_tokens", "stop", "stream",
                          "logprobs", "top_logprobs", "response_format", "structured_outputs",
                          *_SAME})
_COMPLETION_FIELDS = frozenset({"prompt", "max_tokens", "stop", "stream", "logprobs", "best_of",
                                "echo", "suffix", "response_format", "structured_outputs",
                                *_SAME})
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
_MESSAGE_FIELDS = frozenset({"role", "content", "name"})


class LineError(ValueError):
    """Why a line cannot be run, naming the field."""


@dataclass
class BatchLine:
    custom_id: str
    url: str
    messages: list[dict[str, Any]] | None = None
    prompt: str | None = None
    sampling: dict[str, Any] = field(default_factory=dict)  # Almanac's parameter names


def parse_line(fields: dict[str, Any]) -> BatchLine:
    """One decoded line; raises LineError naming what is wrong."""
    custom_id = fields.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        raise LineError("missing custom_id")
    method = fields.get("method", "POST")
    if method != "POST":
        raise LineError(f"method {method!r}: batch lines are POST requests")
    body = fields.get("body")
    # A line without a url (not OpenAI's format, but seen): its body says which endpoint.
    url = fields.get("url", COMPLETIONS if isinstance(body, dict) and "prompt" in body else CHAT)
    if url not in ENDPOINTS:
        raise LineError(f"url {url!r} is not supported: use {CHAT} or {COMPLETIONS}")
    if not isinstance(body, dict):
        raise LineError("missing body")
    given = {k: v for k, v in body.items() if v is not None}  # null means "not set"
    known = _CHAT_FIELDS if url == CHAT else _COMPLETION_FIELDS
    for name in given:
        if name not in known and name not in _HARMLESS:
            raise LineError(f"body.{name}: Almanac cannot honour it for {url}")
    if given.get("stream") not in (None, False):
        raise LineError("body.stream: true is not supported: a batch answers whole responses")
    line = BatchLine(custom_id, url)
    if url == CHAT:
        line.messages = _messages(given.get("messages"))
    else:
        line.prompt = _prompt(given.get("prompt"))
        _completion_only(given)
    line.sampling = _sampling(given, url)
    return line


def _messages(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not value:
        raise LineError("body has no messages (a list of chat messages)")
    out = []
    for i, message in enumerate(value):
        where = f"body.messages[{i}]"
        if not isinstance(message, dict):
            raise LineError(f"{where}: expected an object")
        extra = sorted(k for k, v in message.items() if k not in _MESSAGE_FIELDS and v is not None)
        if extra:
            raise LineError(f"{where}.{extra[0]}: Almanac cannot honour it (text messages only)")
        role = message.get("role")
        if not isinstance(role, str) or role not in _ROLES:
            raise LineError(f"{where}.role: {role!r} is not one of system, developer, user, "
                            "assistant")
        # developer is what OpenAI calls system for its newer models; chat templates know system.
        kept: dict[str, Any] = {"role": _ROLES[role], "content": _content(where, message.get("content"))}
        if message.get("name") is not None:
            kept["name"] = message["name"]
        out.append(kept)
    return out


def _content(where: str, content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for j, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind != "text" or not isinstance(part.get("text"), str):
                raise LineError(f"{where}.content[{j}]: only text parts are supported "
                                f"(got {kind!r})")
            texts.append(part["text"])
        return "\n".join(texts)  # as vLLM joins text parts
    raise LineError(f"{where}.content: expected a string or a list of text parts")


def _prompt(value: Any) -> str:
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        raise LineError("body.prompt: one prompt per line (a list of prompts is several requests)")
    raise LineError("body has no prompt (a string)")


def _completion_only(given: dict[str, Any]) -> None:
    if given.get("echo") not in (None, False):
        raise LineError("body.echo: Almanac cannot honour it (answers hold the completion only)")
    if given.get("suffix") not in (None, ""):
        raise LineError("body.suffix: Almanac cannot honour it (no insertion models)")
    best_of = given.get("best_of")
    if best_of is not None and best_of != given.get("n", 1):
        raise LineError("body.best_of: Almanac cannot honour it unless it equals n")


def _sampling(given: dict[str, Any], url: str) -> dict[str, Any]:
    out = {name: given[name] for name in _SAME if name in given}
    limits = [given[k] for k in ("max_tokens", "max_completion_tokens") if k in given]
    if limits:
        if len(set(map(repr, limits))) > 1:
            raise LineError("body.max_tokens and body.max_completion_tokens disagree")
        out["max_tokens"] = limits[0]
    if "stop" in given:
        stop = given["stop"]
        out["stop"] = [stop] if isinstance(stop, str) else stop
    out.update(_logprobs(given, url))
    out.update(_constraint(given))
    if out.get("logprobs") is not None and given.get("n", 1) != 1:
        raise LineError("body.logprobs: Almanac keeps log-probabilities for n = 1 only")
    return out


def _logprobs(given: dict[str, Any], url: str) -> dict[str, Any]:
    if url == COMPLETIONS:  # an integer: how many alternatives per token
        return {"logprobs": given["logprobs"]} if "logprobs" in given else {}
    wanted, top = given.get("logprobs", False), given.get("top_logprobs")
    if not isinstance(wanted, bool):
        raise LineError("body.logprobs: expected true or false")
    if top is not None and not wanted:
        raise LineError("body.top_logprobs needs body.logprobs: true")
    return {"logprobs": 0 if top is None else top} if wanted else {}


def _constraint(given: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if (fmt := given.get("response_format")) is not None:
        kind = fmt.get("type") if isinstance(fmt, dict) else None
        if kind == "json_object":
            out["json_schema"] = {"type": "object"}  # any JSON object, as vLLM's json_object
        elif kind == "json_schema":
            spec = fmt.get("json_schema")
            schema = spec.get("schema") if isinstance(spec, dict) else None
            if not isinstance(schema, dict):
                raise LineError("body.response_format.json_schema.schema: expected a JSON Schema")
            out["json_schema"] = schema
        elif kind != "text":
            raise LineError(f"body.response_format.type {kind!r}: use text, json_object or "
                            "json_schema")
    if (structured := given.get("structured_outputs")) is not None:
        if not isinstance(structured, dict):
            raise LineError("body.structured_outputs: expected an object")
        set_ = {k: v for k, v in structured.items() if v is not None}
        mapped = {"choice": "choice", "regex": "regex", "json": "json_schema"}
        for name in set_:
            if name not in mapped:
                raise LineError(f"body.structured_outputs.{name}: Almanac cannot honour it "
                                "(choice, regex or json)")
        out.update((mapped[k], v) for k, v in set_.items())
    if len(out) > 1:
        raise LineError("body: give one structured-output constraint (response_format or "
                        "structured_outputs), not several")
    return out

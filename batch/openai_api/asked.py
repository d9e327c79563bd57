"""An OpenAI request read as a batch run reads the same body in an OpenAI batch line.

The body goes through batch.run.openai_batch's `parse_line` (the fields Almanac
honours, mapped onto its sampling parameters; a field it cannot honour is an error
naming it), and its sampling over the settings of a job without a `[sampling]` table
(`Sampling`'s defaults, which are OpenAI's: temperature 1, 16 tokens at most), as an
OpenAI batch job's planning does (batch.run.plan). A request and a batch line with
the same body therefore have the same content key (batch.run.keys.request_key) for
the same model. Only what belongs to the transport is taken out first: `model` (the
server finds the model), `stream` and `stream_options` (how the answer is sent).
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from typing import Any

from batch.openai_api.errors import OpenAIRequestError
from batch.run.keys import canonical, request_key
from batch.run.openai_batch import CHAT, COMPLETIONS, LineError, parse_line
from batch.run.spec.errors import SpecError
from batch.run.spec.settings import Sampling

__all__ = ["CHAT", "COMPLETIONS", "Asked", "read_request"]

_TRANSPORT = ("model", "stream", "stream_options")
_PARAM = re.compile(r"^body\.([A-Za-z_]\w*(?:\[\d+\]|\.[A-Za-z_]\w*)*)")
_MISSING = re.compile(r"^body has no (\w+)")
_SAMPLINGS = 4096  # distinct sampling settings kept validated


@dataclass(frozen=True)
class Asked:
    """One request as the cache keys it."""

    endpoint: str  # CHAT or COMPLETIONS
    model: str  # the name the request gives
    prompt: str | list[dict[str, Any]]  # the prompt, or the chat messages as a run keys them
    sampling: Sampling
    body: dict[str, Any]  # the body without model and stream: what a batch line would carry
    stream: bool = False
    include_usage: bool = False

    @property
    def chat(self) -> bool:
        return self.endpoint == CHAT

    def key(self, model_identity: str, adapter_identity: str | None) -> str:
        """The content key a run of this model (and adapter) gives this request."""
        return request_key(model_identity, adapter_identity, self.prompt, self.sampling)

    def body_json(self) -> str:
        return json.dumps(self.body, ensure_ascii=False, sort_keys=True)


class _Samplings:
    """Sampling over a job's defaults, validated once per distinct set (as a run's
    planning does: requests repeat a handful of settings)."""

    def __init__(self) -> None:
        self.defaults = Sampling.from_mapping({})  # a job without [sampling]
        self._seen: dict[str, Sampling] = {}
        self._lock = threading.Lock()

    def __call__(self, overrides: dict[str, Any]) -> Sampling:
        seen = canonical(overrides)
        found = self._seen.get(seen)
        if found is None:
            try:
                found = self.defaults.overridden(overrides)
            except SpecError as exc:
                message = str(exc)
                raise OpenAIRequestError(message, message.split(":", 1)[0] or None) from None
            with self._lock:
                if len(self._seen) >= _SAMPLINGS:
                    self._seen.clear()
                self._seen[seen] = found
        return found


_sampling = _Samplings()


def read_request(endpoint: str, body: Any) -> Asked:
    """A decoded request body for `endpoint`; raises OpenAIRequestError naming the field."""
    if endpoint not in (CHAT, COMPLETIONS):
        raise OpenAIRequestError(f"{endpoint}: not an endpoint of this server")
    if not isinstance(body, dict):
        raise OpenAIRequestError("the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise OpenAIRequestError("model: required, the name of a model (GET /v1/models lists "
                                 "those the cache answers for)", "model")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise OpenAIRequestError("stream: expected true or false", "stream")
    options = body.get("stream_options")
    include_usage = False
    if options is not None:
        if not stream:
            raise OpenAIRequestError("stream_options: only with stream: true", "stream_options")
        usage = options.get("include_usage") if isinstance(options, dict) else None
        if not isinstance(options, dict) or set(options) - {"include_usage"} or \
                not isinstance(usage, bool | None):
            raise OpenAIRequestError("stream_options: expected {\"include_usage\": true or false}",
                                     "stream_options")
        include_usage = bool(usage)
    prompt = body.get("prompt")
    if endpoint == COMPLETIONS and isinstance(prompt, list) and len(prompt) != 1:
        raise OpenAIRequestError("prompt: one prompt per request (send several prompts as "
                                 "several requests)", "prompt")
    kept = {k: v for k, v in body.items() if k not in _TRANSPORT}
    try:
        line = parse_line({"custom_id": "request", "url": endpoint, "body": kept})
    except LineError as exc:
        message = str(exc)
        found = _PARAM.match(message) or _MISSING.match(message)
        raise OpenAIRequestError(message, found.group(1) if found else None) from None
    asked = line.messages if line.messages is not None else line.prompt
    assert asked is not None  # parse_line gives one or the other
    return Asked(endpoint, model, asked, _sampling(line.sampling), kept, bool(stream),
                 include_usage)

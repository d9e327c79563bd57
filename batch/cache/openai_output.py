"""Cached predictions as OpenAI batch output lines, the shape OpenAI's and vLLM's tools read.

A line is `{"id", "custom_id", "response": {"status_code", "request_id", "body"},
"error"}`. The body answers the request's endpoint: a `chat.completion` for chat
messages, a `text_completion` for a plain prompt, as the record's `chat` column says
(a record written before that column is read by the shape of its `prompt`). Log-probabilities kept by the
run come back in the endpoint's own form (`choices[].logprobs.content` for chat;
`tokens` / `token_logprobs` / `top_logprobs` / `text_offset` for completions).

A failed row is an error line (`response: null`, `error: {code, message}`), which
`export --errors FILE` writes apart, as OpenAI's batch error file holds them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, TextIO, cast

from batch.cache.schema import PredictionRecord

if TYPE_CHECKING:  # pyarrow is loaded by the export that calls this
    import pyarrow as pa

_FINISH = frozenset({"stop", "length", "content_filter"})
_LOWEST = -9999.0  # what OpenAI-compatible servers report for a log-probability of -inf


def is_chat(rec: PredictionRecord) -> bool:
    """Whether the record answers chat messages: its `chat` column, or for a record
    written before that column, whether its `prompt` holds chat messages' JSON."""
    if rec.get("chat") is not None:
        return bool(rec["chat"])
    prompt = rec["prompt"]
    if not prompt or not prompt.startswith("[{"):
        return False
    try:
        messages = json.loads(prompt)
    except ValueError:
        return False
    return isinstance(messages, list) and all(
        isinstance(m, dict) and "role" in m and "content" in m for m in messages)


def openai_batch_line(rec: PredictionRecord) -> dict[str, Any]:
    """One line of an OpenAI batch output (or error) file."""
    request_hash = hashlib.sha256(f"{rec['job']}\0{rec['input_id']}\0{rec['key']}".encode())
    line: dict[str, Any] = {"id": f"batch_req_{request_hash.hexdigest()[:32]}",
                            "custom_id": rec["input_id"]}
    if rec["error"] is not None:
        # A row that never became a request has a failure key ("x…"): the request was bad.
        code = "invalid_request" if rec["key"].startswith("x") else "generation_failed"
        return {**line, "response": None, "error": {"code": code, "message": rec["error"]}}
    chat = is_chat(rec)
    texts = rec["outputs"] or [rec["output"] or ""]
    finish = rec["finish_reason"] if rec["finish_reason"] in _FINISH else "stop"
    steps = _steps(rec)
    choices = []
    for i, text in enumerate(texts):
        logprobs = _chat_logprobs(*steps) if steps and i == 0 and chat else \
            _completion_logprobs(*steps) if steps and i == 0 else None
        if chat:
            choices.append({"index": i, "message": {"role": "assistant", "content": text},
                            "logprobs": logprobs, "finish_reason": finish})
        else:
            choices.append({"index": i, "text": text, "logprobs": logprobs,
                            "finish_reason": finish})
    prompt_tokens, output_tokens = rec["prompt_tokens"] or 0, rec["output_tokens"] or 0
    body = {
        "id": f"{'chatcmpl' if chat else 'cmpl'}-{rec['key'][:32]}",
        "object": "chat.completion" if chat else "text_completion",
        "created": int(rec["created_at"].timestamp()),
        # As the request named it: an adapter by its own name (vLLM serves a LoRA
        # module under its name), otherwise the model.
        "model": rec["adapter"] or rec["model"],
        "choices": choices,
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": output_tokens,
                  "total_tokens": prompt_tokens + output_tokens},
    }
    return {**line, "response": {"status_code": 200, "request_id": f"req_{rec['key'][:32]}",
                                 "body": body}, "error": None}


def _steps(rec: PredictionRecord) -> tuple[list[dict[str, Any]], list[list[dict[str, Any]]]] | None:
    """(the chosen token of each step, the top alternatives of each step, best first), from
    the `logprobs` column: per step a list whose first entry is the chosen token (others,
    when kept, carry their `rank`); as many alternatives as the request asked for."""
    if not rec["logprobs"]:
        return None
    raw = json.loads(rec["logprobs"])
    asked = (json.loads(rec["params"]) if rec["params"] else {}).get("logprobs") or 0
    chosen, tops = [], []
    for step in raw if isinstance(raw, list) else ():
        if not (isinstance(step, list) and step
                and all(isinstance(e, dict) and "token_id" in e for e in step)):
            return None  # not the engine's form: nothing to report rather than a wrong thing
        chosen.append(step[0])
        ranked = sorted((e for e in step if e.get("rank") is not None), key=lambda e: e["rank"])
        unique = list({e["token_id"]: e for e in ranked}.values())
        tops.append(unique[:asked])
    return chosen, tops


def _token(entry: dict[str, Any]) -> str:
    token = entry.get("token")
    return token if isinstance(token, str) else f"token_id:{entry['token_id']}"


def _logprob(entry: dict[str, Any]) -> float:
    value = entry.get("logprob")
    return _LOWEST if value is None else max(float(value), _LOWEST)


def _chat_logprobs(chosen: list[dict[str, Any]], tops: list[list[dict[str, Any]]]) -> dict[str, Any]:
    def item(e: dict[str, Any]) -> dict[str, Any]:
        token = _token(e)
        return {"token": token, "logprob": _logprob(e), "bytes": list(token.encode("utf-8"))}

    return {"content": [{**item(c), "top_logprobs": [item(t) for t in top]}
                        for c, top in zip(chosen, tops, strict=True)], "refusal": None}


def _completion_logprobs(chosen: list[dict[str, Any]],
                         tops: list[list[dict[str, Any]]]) -> dict[str, Any]:
    tokens = [_token(c) for c in chosen]
    offsets, at = [], 0
    for token in tokens:
        offsets.append(at)
        at += len(token)
    return {"tokens": tokens, "token_logprobs": [_logprob(c) for c in chosen],
            "top_logprobs": [{_token(t): _logprob(t) for t in top} for top in tops],
            "text_offset": offsets}


class ErrorsApart:
    """`export --errors FILE`: failed rows go to FILE (an open text file) as error lines,
    the rest on to the output."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.failed = 0

    def split(self, tables: Iterator[pa.Table]) -> Iterator[pa.Table]:
        """The tables' successful rows; the failed ones are written to the errors file."""
        import pyarrow.compute as pc

        for table in tables:
            failed = table.filter(pc.is_valid(table["error"]))
            for rec in failed.to_pylist():
                self.out.write(json.dumps(openai_batch_line(cast(PredictionRecord, rec)),
                                          ensure_ascii=False) + "\n")
            self.failed += failed.num_rows
            yield table.filter(pc.is_null(table["error"]))

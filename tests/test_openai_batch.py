"""OpenAI batch files as OpenAI's and vLLM's tools write and read them: each line's `url`
picks the endpoint and the answer's shape, `response_format` constrains the output,
`logprobs` / `top_logprobs` are kept and returned, anything Almanac cannot honour is an
error line naming it, and `export --errors` writes failed lines apart. What is read and
written is checked against the peers' own types: the `openai` package's, and vLLM's
(`BatchRequestInput`, `BatchRequestOutput`, its completion responses)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pydantic import TypeAdapter

from almanac.cli import cli
from batch.cache.export import export
from batch.run.openai_batch import LineError, parse_line
from tests.cache_support import record, write
from tests.engine_support import TINY_MODEL, write_job

openai_types = pytest.importorskip("openai.types")
chat_params = pytest.importorskip("openai.types.chat.completion_create_params")
completion_params = pytest.importorskip("openai.types.completion_create_params")

CHAT, COMPLETIONS = "/v1/chat/completions", "/v1/completions"
MESSAGES = [{"role": "user", "content": "Name a fruit."}]
SCHEMA = {"type": "object", "properties": {"fruit": {"enum": ["plum", "pear"]}},
          "required": ["fruit"], "additionalProperties": False}


def line(custom_id: str, url: str, **body: Any) -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": url,
            "body": {"model": TINY_MODEL, **body}}


def _openai_request(url: str, body: dict[str, Any]) -> None:
    """The body is a request the openai package's own types accept for that endpoint."""
    params = chat_params.CompletionCreateParamsNonStreaming if url == CHAT \
        else completion_params.CompletionCreateParamsNonStreaming
    TypeAdapter(params).validate_python(body)


# -- reading lines -----------------------------------------------------------------------------

ACCEPTED = [
    (line("c1", CHAT, messages=MESSAGES, max_completion_tokens=5, temperature=0, stop="\n",
          user="u-1", metadata={"team": "a"}, store=False),
     {"messages": MESSAGES, "sampling": {"max_tokens": 5, "temperature": 0, "stop": ["\n"]}}),
    (line("c2", CHAT, messages=[{"role": "developer", "content": [
        {"type": "text", "text": "Be brief."}, {"type": "text", "text": "Answer."}]},
        {"role": "user", "content": "Plum?", "name": "ann"}]),
     {"messages": [{"role": "system", "content": "Be brief.\nAnswer."},
                   {"role": "user", "content": "Plum?", "name": "ann"}], "sampling": {}}),
    (line("c3", CHAT, messages=MESSAGES, response_format={"type": "json_object"}),
     {"sampling": {"json_schema": {"type": "object"}}}),
    (line("c4", CHAT, messages=MESSAGES, response_format={
        "type": "json_schema", "json_schema": {"name": "fruit", "schema": SCHEMA, "strict": True}}),
     {"sampling": {"json_schema": SCHEMA}}),
    (line("c5", CHAT, messages=MESSAGES, logprobs=True, top_logprobs=3),
     {"sampling": {"logprobs": 3}}),
    (line("c6", CHAT, messages=MESSAGES, logprobs=True), {"sampling": {"logprobs": 0}}),
    (line("c7", CHAT, messages=MESSAGES, logprobs=False, response_format={"type": "text"},
          stream=False), {"sampling": {}}),
    (line("t1", COMPLETIONS, prompt="Plum is a", max_tokens=9, top_p=0.5, seed=3,
          stop=["a", "b"], logprobs=2, n=1, best_of=1, echo=False),
     {"prompt": "Plum is a",
      "sampling": {"max_tokens": 9, "top_p": 0.5, "seed": 3, "stop": ["a", "b"], "logprobs": 2,
                   "n": 1}}),
    (line("t2", COMPLETIONS, prompt=["Only one"]), {"prompt": "Only one", "sampling": {}}),
]


@pytest.mark.parametrize(("given", "expected"), ACCEPTED, ids=[g["custom_id"] for g, _ in ACCEPTED])
def test_a_line_is_read_as_its_endpoint_asks(given: dict[str, Any], expected: dict[str, Any]) -> None:
    if given["body"].get("messages", [{}])[0].get("role") != "developer":  # a newer role
        _openai_request(given["url"], given["body"])
    parsed = parse_line(given)
    assert parsed.custom_id == given["custom_id"] and parsed.url == given["url"]
    assert parsed.sampling == expected["sampling"]
    if given["url"] == CHAT:
        assert parsed.messages == expected.get("messages", MESSAGES) and parsed.prompt is None
    else:
        assert parsed.prompt == expected["prompt"] and parsed.messages is None


def test_a_field_set_to_null_counts_as_unset() -> None:
    parsed = parse_line(line("n", CHAT, messages=MESSAGES, tools=None, logit_bias=None, seed=None))
    assert parsed.sampling == {}


REFUSED = [
    ({**line("x", "/v1/embeddings", input="a")}, "url '/v1/embeddings' is not supported: use "
                                                  "/v1/chat/completions or /v1/completions"),
    ({**line("x", CHAT, messages=MESSAGES), "method": "GET"}, "method 'GET'"),
    (line("x", CHAT, messages=MESSAGES, stream=True), "body.stream: true is not supported"),
    (line("x", CHAT, messages=MESSAGES, tools=[{"type": "function", "function": {"name": "f"}}]),
     "body.tools: Almanac cannot honour it"),
    (line("x", CHAT, messages=MESSAGES, logit_bias={"50256": -100}), "body.logit_bias"),
    (line("x", CHAT, messages=MESSAGES, reasoning_effort="low"), "body.reasoning_effort"),
    (line("x", CHAT, messages=MESSAGES, top_logprobs=2), "top_logprobs needs body.logprobs: true"),
    (line("x", CHAT, messages=MESSAGES, logprobs=True, n=2), "n = 1 only"),
    (line("x", CHAT, messages=MESSAGES, response_format={"type": "xml"}), "response_format.type"),
    (line("x", CHAT, messages=MESSAGES, response_format={"type": "json_schema"}),
     "json_schema.schema"),
    (line("x", CHAT, messages=[{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:,"}}]}]), "only text parts"),
    (line("x", CHAT, messages=[{"role": "tool", "content": "4", "tool_call_id": "t"}]),
     "messages[0].tool_call_id"),
    (line("x", CHAT, prompt="wrong endpoint"), "body.prompt: Almanac cannot honour it"),
    (line("x", COMPLETIONS, prompt=["one", "two"]), "one prompt per line"),
    (line("x", COMPLETIONS, prompt="p", echo=True), "body.echo"),
    (line("x", COMPLETIONS, prompt="p", suffix="end"), "body.suffix"),
    (line("x", COMPLETIONS, prompt="p", best_of=3), "body.best_of"),
]


@pytest.mark.parametrize(("given", "message"), REFUSED, ids=[m for _, m in REFUSED])
def test_what_almanac_cannot_honour_is_an_error_line_naming_it(given: dict[str, Any],
                                                               message: str) -> None:
    with pytest.raises(LineError) as err:
        parse_line(given)
    assert message in str(err.value)


def test_an_error_line_is_a_failed_row_of_its_own(tmp_path: Path) -> None:
    from batch.run.inputs import read_rows
    from batch.run.spec.job import load_spec

    lines = [line("ok", CHAT, messages=MESSAGES), line("bad", CHAT, messages=MESSAGES, stream=True)]
    spec = load_spec(write_job(tmp_path, "oai", lines, template=None, input_format="openai-batch"))
    ok, bad = read_rows(spec.input)
    assert ok.error is None and bad.id == "bad"
    assert bad.error == "line 2: body.stream: true is not supported: a batch answers whole responses"


# -- writing lines -----------------------------------------------------------------------------


def _step(token_id: int, token: str, logprob: float, *others: tuple[int, str, float]) -> list[dict]:
    """One step of the `logprobs` column as the engine writes it: the chosen token first,
    then the alternatives it returned, each with its rank."""
    chosen = {"token_id": token_id, "token": token, "logprob": logprob, "rank": 1}
    return [chosen, *({"token_id": t, "token": s, "logprob": lp, "rank": i + 2}
                      for i, (t, s, lp) in enumerate(others))]


def _records() -> list[dict[str, Any]]:
    steps = [_step(5, "Plum", -0.1, (6, "Pear", -2.5), (7, "Fig", -3.0)),
             _step(8, "!", -0.2, (9, ".", -1.5), (10, "?", float("-inf")))]
    return [
        record("chat", output="Plum!", prompt=json.dumps(MESSAGES), output_tokens=2,
               logprobs=json.dumps(steps, allow_nan=True).replace("-Infinity", "null"),
               params=json.dumps({"logprobs": 2})),
        record("text", output=" a drupe", prompt="Plum is", output_tokens=3,
               logprobs=json.dumps(steps[:1]), params=json.dumps({"logprobs": 1})),
        record("two", output="a", outputs=["a", "b"], prompt=json.dumps(MESSAGES)),
        record("bad", error="prompt is 300 tokens; the model's context (max_model_len) is 256"),
        record("never", error="line 9: body.stream: true is not supported", key="x" + "0" * 63),
    ]


def test_exported_lines_answer_each_endpoint_in_its_own_shape(home: Path, tmp_path: Path) -> None:
    write(home / "predictions", _records())
    out = tmp_path / "out.jsonl"
    assert export(home / "predictions", "fruits", "openai-batch", out).written == 5
    lines = {x["custom_id"]: x for x in map(json.loads, out.read_text().splitlines())}

    chat = openai_types.chat.ChatCompletion.model_validate(lines["chat"]["response"]["body"])
    assert chat.object == "chat.completion" and chat.choices[0].message.content == "Plum!"
    content = chat.choices[0].logprobs.content
    assert [t.token for t in content] == ["Plum", "!"]
    assert [[a.token for a in t.top_logprobs] for t in content] == [["Plum", "Pear"], ["!", "."]]
    assert content[0].bytes == list(b"Plum")

    text = openai_types.Completion.model_validate(lines["text"]["response"]["body"])
    assert text.object == "text_completion" and text.choices[0].text == " a drupe"
    assert text.choices[0].logprobs.tokens == ["Plum"]
    assert text.choices[0].logprobs.top_logprobs == [{"Plum": -0.1}]
    assert text.usage.total_tokens == text.usage.prompt_tokens + text.usage.completion_tokens

    two = openai_types.chat.ChatCompletion.model_validate(lines["two"]["response"]["body"])
    assert [c.message.content for c in two.choices] == ["a", "b"]
    assert lines["bad"]["response"] is None
    assert lines["bad"]["error"]["code"] == "generation_failed"
    assert lines["never"]["error"] == {"code": "invalid_request",
                                       "message": "line 9: body.stream: true is not supported"}


def test_the_record_says_which_endpoint_it_answers_not_its_prompts_look(
        home: Path, tmp_path: Path) -> None:
    """A plain prompt that happens to read as chat messages' JSON was a completion; a
    record written before the `chat` column is read by its prompt's shape."""
    looks_like_chat = json.dumps([{"role": "user", "content": "plum"}])
    write(home / "predictions", [
        record("text", prompt=looks_like_chat, chat=False),
        record("chat", prompt=looks_like_chat, chat=True),
        record("older", prompt=looks_like_chat, chat=None),
    ])
    out = tmp_path / "out.jsonl"
    export(home / "predictions", "fruits", "openai-batch", out)
    shapes = {x["custom_id"]: x["response"]["body"]["object"]
              for x in map(json.loads, out.read_text().splitlines())}
    assert shapes == {"text": "text_completion", "chat": "chat.completion",
                      "older": "chat.completion"}


def test_export_errors_writes_failed_lines_apart(home: Path, tmp_path: Path) -> None:
    write(home / "predictions", _records())
    out, errors = tmp_path / "out.jsonl", tmp_path / "errors.jsonl"
    result = CliRunner().invoke(cli, ["export", "fruits", "--format", "openai-batch", "-o",
                                      str(out), "--errors", str(errors)])
    assert result.exit_code == 0, result.output
    assert sorted(json.loads(x)["custom_id"] for x in out.read_text().splitlines()) == \
        ["chat", "text", "two"]
    failed = [json.loads(x) for x in errors.read_text().splitlines()]
    assert sorted(x["custom_id"] for x in failed) == ["bad", "never"]
    assert all(x["response"] is None and x["error"]["message"] for x in failed)
    # Each file's own count: three answers to the output, two failures apart.
    assert f"exported 3 predictions of fruits to {out} and 2 failed lines to {errors}" \
        in result.stderr

    refused = CliRunner().invoke(cli, ["export", "fruits", "--format", "jsonl", "-o",
                                       str(tmp_path / "x.jsonl"), "--errors", str(errors)])
    assert refused.exit_code == 2 and "--format openai-batch" in refused.output


# -- a real run, checked with vLLM's own types ---------------------------------------------


@pytest.mark.engine
def test_a_batch_file_runs_and_exports_as_vllm_and_openai_read_it(runner: Any, home: Path,
                                                                  tmp_path: Path) -> None:
    from vllm.entrypoints.launchers.run_batch import BatchRequestInput, BatchRequestOutput
    from vllm.entrypoints.openai.completion.protocol import CompletionRequest, CompletionResponse

    from batch.run.spec.job import load_spec

    good = [
        line("chat", CHAT, messages=MESSAGES, max_tokens=8),
        line("text", COMPLETIONS, prompt="Plum is a", max_tokens=8),
        line("object", CHAT, messages=MESSAGES, max_tokens=40, response_format={"type": "json_object"}),
        line("schema", CHAT, messages=MESSAGES, max_tokens=40, response_format={
            "type": "json_schema", "json_schema": {"name": "fruit", "schema": SCHEMA}}),
        line("top", CHAT, messages=MESSAGES, max_tokens=5, logprobs=True, top_logprobs=3),
        line("text-top", COMPLETIONS, prompt="Plum is a", max_tokens=5, logprobs=2),
    ]
    for given in good:  # what vLLM's own batch runner accepts
        if given["url"] == CHAT:
            BatchRequestInput.model_validate(given)
        else:
            CompletionRequest.model_validate(given["body"])
    bad = [line("stream", CHAT, messages=MESSAGES, stream=True),
           line("embed", "/v1/embeddings", input="plum"),
           line("tools", CHAT, messages=MESSAGES, tools=[{"type": "function",
                                                          "function": {"name": "f"}}])]
    job = write_job(tmp_path, "oai", [*good, *bad], template=None, input_format="openai-batch")
    result = runner.run(load_spec(job))
    assert (result.generated, result.failed) == (len(good), len(bad))

    out, errors = tmp_path / "out.jsonl", tmp_path / "errors.jsonl"
    export(home / "predictions", "oai", "openai-batch", out, errors=errors)
    answered = {x["custom_id"]: x for x in map(json.loads, out.read_text().splitlines())}
    assert sorted(answered) == sorted(g["custom_id"] for g in good)
    for custom_id, given in ((g["custom_id"], g) for g in good):
        answer = answered[custom_id]
        body = answer["response"]["body"]
        if given["url"] == CHAT:
            BatchRequestOutput.model_validate(answer)
            parsed = openai_types.chat.ChatCompletion.model_validate(body)
            assert parsed.object == "chat.completion"
        else:
            CompletionResponse.model_validate(body)
            BatchRequestOutput.model_validate({**answer, "response": {**answer["response"],
                                                                      "body": None}})
            parsed = openai_types.Completion.model_validate(body)
            assert parsed.object == "text_completion"
    for custom_id in ("object", "schema"):  # the constraint held: the output is that JSON
        choice = answered[custom_id]["response"]["body"]["choices"][0]
        assert choice["finish_reason"] == "stop"
        value = json.loads(choice["message"]["content"])
        assert isinstance(value, dict)
        if custom_id == "schema":
            assert set(value) == {"fruit"} and value["fruit"] in ("plum", "pear")
    top = answered["top"]["response"]["body"]["choices"][0]["logprobs"]["content"]
    assert len(top) == 5 and all(len(t["top_logprobs"]) == 3 for t in top)
    assert all(t["top_logprobs"][0]["logprob"] >= t["logprob"] for t in top)
    text_top = answered["text-top"]["response"]["body"]["choices"][0]["logprobs"]
    assert len(text_top["tokens"]) == 5 and all(len(t) <= 2 for t in text_top["top_logprobs"])

    failed = {x["custom_id"]: x for x in map(json.loads, errors.read_text().splitlines())}
    assert sorted(failed) == ["embed", "stream", "tools"]
    for x in failed.values():
        BatchRequestOutput.model_validate(x)
    assert "use /v1/chat/completions or /v1/completions" in failed["embed"]["error"]["message"]
    assert "body.tools" in failed["tools"]["error"]["message"]

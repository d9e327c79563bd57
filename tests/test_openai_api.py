"""`almanac serve` as an OpenAI-compatible model server over the cache, called with the
official `openai` client: cached answers in OpenAI's shapes (whole and streamed), misses
as `NotFoundError` with code `not_cached` and recorded (bounded), errors in OpenAI's
shape, and request keys equal to a batch run's for the same body. Records are written
by the real ShardWriter with keys made by the run's own code; no engine here
(tests/test_openai_engine.py runs one)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from almanac.cli import cli
from batch.cache.store import PredictionStore
from batch.openai_api.asked import CHAT, COMPLETIONS, read_request
from batch.openai_api.misses import MissStore
from batch.openai_api.misses_jobs import job_name, write_jobs
from batch.run.keys import model_identity
from batch.run.plan import Target, make_plans
from tests.openai_support import REVISION, Served, answer, cache

openai = pytest.importorskip("openai")

MESSAGES = [{"role": "system", "content": "You name fruit families."},
            {"role": "user", "content": "plum"}]
GREEDY = {"max_tokens": 8, "temperature": 0}
HUB_REPO, HUB_SHA = "fruitco/fruit-7b", "0123456789abcdef" * 2 + "01234567"
LOGPROBS = [[{"token_id": 7, "token": " dr", "logprob": -0.1, "rank": 1},
             {"token_id": 9, "token": " po", "logprob": -2.5, "rank": 2}],
            [{"token_id": 8, "token": "upe", "logprob": -0.2, "rank": 1}]]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, Path]]:
    home = tmp_path_factory.mktemp("openai")
    from catalog.db import Catalog
    from catalog.models import upsert_model
    from catalog.records import ModelEntry

    catalog = Catalog.at(home / "catalog.db")
    with catalog.sessions.begin() as s:
        for ref, repo in (("fruit-hub", HUB_REPO), ("other-hub", "fruitco/other-7b")):
            upsert_model(s, ModelEntry(ref=ref, name=ref.replace("-", " ").title(),
                                       source="hub", repo_id=repo))
    catalog.close()
    cache(home / "predictions", "fruits", [
        answer("p1", COMPLETIONS, {"prompt": "plum:", **GREEDY}, " drupe"),
        answer("p2", COMPLETIONS, {"prompt": "pear:", **GREEDY}, " pome"),
        answer("p3", COMPLETIONS, {"prompt": "fig:", "n": 2, "temperature": 0.8, "seed": 3},
               " syconium", outputs=[" syconium", " drupe"], output_tokens=4),
        answer("p4", COMPLETIONS, {"prompt": "plum:", "logprobs": 1, **GREEDY}, " drupe",
               logprobs=json.dumps(LOGPROBS), output_tokens=2),
        answer("p5", COMPLETIONS, {"prompt": "too long:", **GREEDY}, "",
               error=f"cannot read {home}/models/x: the context is full"),
        answer("c1", CHAT, {"messages": MESSAGES, **GREEDY}, "drupe"),
        answer("c2", CHAT, {"messages": MESSAGES, "logprobs": True, "top_logprobs": 1, **GREEDY},
               "drupe", logprobs=json.dumps(LOGPROBS), output_tokens=2),
    ])
    cache(home / "predictions", "hub", [
        answer("h1", COMPLETIONS, {"prompt": "plum:", **GREEDY}, " stone fruit", model="fruit-hub",
               revision=HUB_SHA, repo_id=HUB_REPO)])
    cache(home / "predictions", "tuned", [
        answer("a1", COMPLETIONS, {"prompt": "plum:", **GREEDY}, " berry", adapter="lora-a")])
    server = Served(home)
    yield server, home
    server.close()


@pytest.fixture(scope="module")
def client(served: tuple[Served, Path]) -> Any:
    return served[0].client()


# -- answers ---------------------------------------------------------------------------------


def test_models_lists_what_the_cache_answers_for(client: Any) -> None:
    ids = [m.id for m in client.models.list()]
    assert ids == ["fruit-hub", "tiny", "tiny+lora-a"]
    assert client.models.retrieve("tiny+lora-a").owned_by == "almanac"
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("no-such-model")
    assert caught.value.code == "model_not_found"


def test_a_cached_completion_comes_back_as_it_was_cached(client: Any) -> None:
    raw = client.completions.with_raw_response.create(model="tiny", prompt="plum:", **GREEDY)
    got = raw.parse()
    assert [c.text for c in got.choices] == [" drupe"]
    assert got.object == "text_completion" and got.model == "tiny"
    assert got.choices[0].finish_reason == "stop"
    assert (got.usage.prompt_tokens, got.usage.completion_tokens) == (5, 1)
    asked = read_request(COMPLETIONS, {"model": "tiny", "prompt": "plum:", **GREEDY})
    assert raw.headers["x-almanac-key"] == asked.key(model_identity("tiny", None, REVISION), None)
    # The adapter's answer is its own: another key.
    tuned = client.completions.create(model="tiny+lora-a", prompt="plum:", **GREEDY)
    assert tuned.choices[0].text == " berry"


def test_a_hub_model_is_keyed_by_its_recorded_commit_and_found_by_any_catalog_name(
        client: Any) -> None:
    for name in ("fruit-hub", HUB_REPO, "Fruit Hub"):
        got = client.completions.create(model=name, prompt="plum:", **GREEDY)
        assert (got.choices[0].text, got.model) == (" stone fruit", "fruit-hub")


def test_n_and_logprobs_come_from_what_was_cached(client: Any) -> None:
    several = client.completions.create(model="tiny", prompt="fig:", n=2, temperature=0.8, seed=3)
    assert [c.text for c in several.choices] == [" syconium", " drupe"]
    scored = client.completions.create(model="tiny", prompt="plum:", logprobs=1, **GREEDY)
    assert scored.choices[0].logprobs.tokens == [" dr", "upe"]
    assert scored.choices[0].logprobs.token_logprobs == [-0.1, -0.2]
    assert scored.choices[0].logprobs.top_logprobs[0] == {" dr": -0.1}


def test_chat_completions_answer_chat_records(client: Any) -> None:
    got = client.chat.completions.create(model="tiny", messages=MESSAGES, **GREEDY)
    assert got.object == "chat.completion"
    assert got.choices[0].message.role == "assistant"
    assert got.choices[0].message.content == "drupe"
    scored = client.chat.completions.create(model="tiny", messages=MESSAGES, logprobs=True,
                                            top_logprobs=1, **GREEDY)
    assert [t.token for t in scored.choices[0].logprobs.content] == [" dr", "upe"]
    # A prompt equal to the messages' text is another request: chat and text never mix.
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="tiny", prompt=json.dumps(MESSAGES), **GREEDY)


def test_streaming_sends_the_cached_text(client: Any) -> None:
    text = "".join(c.choices[0].text for c in client.completions.create(
        model="tiny", prompt="pear:", stream=True, **GREEDY) if c.choices)
    assert text == " pome"
    chunks = list(client.chat.completions.create(
        model="tiny", messages=MESSAGES, stream=True, stream_options={"include_usage": True},
        **GREEDY))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "drupe"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 1


def test_a_cached_failure_is_that_failure_without_the_home(client: Any,
                                                           served: tuple[Served, Path]) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        client.completions.create(model="tiny", prompt="too long:", **GREEDY)
    assert caught.value.code == "generation_failed"
    assert "<home>/models/x" in caught.value.message and str(served[1]) not in caught.value.message


# -- misses ----------------------------------------------------------------------------------


def _misses(home: Path, *args: str) -> Any:
    result = CliRunner().invoke(cli, ["--home", str(home), "misses", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_a_miss_is_not_found_recorded_once_and_counted(client: Any,
                                                       served: tuple[Served, Path]) -> None:
    for _ in range(2):
        with pytest.raises(openai.NotFoundError) as caught:
            client.completions.create(model="tiny", prompt="quince:", **GREEDY)
        assert caught.value.code == "not_cached"
        assert caught.value.response.headers["x-almanac-miss"] in ("recorded", "seen")
    mine = [m for m in _misses(served[1])["misses"] if m["body"].get("prompt") == "quince:"]
    assert len(mine) == 1
    assert mine[0]["seen"] == 2 and mine[0]["model"] == "tiny"
    assert mine[0]["endpoint"] == COMPLETIONS and mine[0]["body"] == {"prompt": "quince:", **GREEDY}
    assert mine[0]["first_seen"] <= mine[0]["last_seen"]


def test_a_catalog_model_with_nothing_cached_misses(client: Any, served: tuple[Served, Path]) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="fruitco/other-7b", messages=MESSAGES)
    assert caught.value.code == "not_cached"
    # Kept under its catalog reference, the name `misses run` resolves.
    assert [m["served"] for m in _misses(served[1], "--model", "other-hub")["misses"]] == \
        ["other-hub"]


def test_a_body_over_the_miss_bound_is_answered_but_not_kept(client: Any,
                                                              served: tuple[Served, Path]) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.completions.create(model="tiny", prompt="x" * 70_000, **GREEDY)
    assert caught.value.response.headers["x-almanac-miss"] == "too_large"
    listed = CliRunner().invoke(cli, ["--home", str(served[1]), "misses"])
    assert "not recorded (too_large" in listed.stderr
    assert "x" * 100 not in listed.stdout


def test_the_store_keeps_at_most_its_bound(tmp_path: Path) -> None:
    with MissStore.open(tmp_path) as store:
        said = [store.add(f"m{i}", "tiny", None, COMPLETIONS, "{}", max_rows=2) for i in range(3)]
        assert said == ["recorded", "recorded", "full"]
        assert store.add("m0", "tiny", None, COMPLETIONS, "{}", max_rows=2) == "seen"
        assert [u.reason for u in store.unrecorded()] == ["full"]
        assert store.clear("tiny") == 2 and store.misses() == []


def test_a_server_told_not_to_record_misses_keeps_none(tmp_path: Path) -> None:
    cache(tmp_path / "predictions", "fruits", [
        answer("p1", COMPLETIONS, {"prompt": "plum:", **GREEDY}, " drupe")])
    server = Served(tmp_path, record_misses=False)
    try:
        with pytest.raises(openai.NotFoundError) as caught:
            server.client().completions.create(model="tiny", prompt="kiwi:", **GREEDY)
    finally:
        server.close()
    assert caught.value.response.headers["x-almanac-miss"] == "off"
    assert not (tmp_path / "predictions" / "misses.db").exists()


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(("endpoint", "body", "status", "param"), [
    (COMPLETIONS, b"{not json", 422, None),
    (COMPLETIONS, b"[1, 2]", 422, None),
    (COMPLETIONS, b'{"prompt": "plum:"}', 400, "model"),
    (COMPLETIONS, b'{"model": "tiny", "prompt": "plum:", "logit_bias": {"1": 2}}', 400, "logit_bias"),
    (COMPLETIONS, b'{"model": "tiny", "prompt": ["a", "b"]}', 400, "prompt"),
    (COMPLETIONS, b'{"model": "tiny", "prompt": "a", "temperature": -1}', 400, "temperature"),
    (COMPLETIONS, b'{"model": "tiny", "prompt": "a", "stream": "yes"}', 400, "stream"),
    (CHAT, b'{"model": "tiny", "messages": [{"role": "user", "content": '
           b'[{"type": "image_url", "image_url": {"url": "x"}}]}]}', 400, "messages[0].content[0]"),
    (CHAT, b'{"model": "tiny", "messages": [], "tools": [{"type": "function"}]}', 400, "tools"),
    (CHAT, b'{"model": "tiny", "messages": [{"role": ["user"], "content": "x"}]}', 400,
     "messages[0].role"),
    (CHAT, b'{"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]}', 404,
     "model"),
])
def test_bad_requests_get_openais_error_naming_the_field(
        served: tuple[Served, Path], endpoint: str, body: bytes, status: int,
        param: str | None) -> None:
    resp = httpx.post(served[0].url + endpoint, content=body,
                      headers={"content-type": "application/json"})
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param and error["message"]
    assert str(served[1]) not in resp.text and "Traceback" not in resp.text


def test_size_route_and_token_errors_are_openais_too(served: tuple[Served, Path],
                                                     tmp_path: Path) -> None:
    url = served[0].url
    big = httpx.post(url + COMPLETIONS, content=b"x" * (2 << 20),
                     headers={"content-type": "application/json"})
    assert big.status_code == 413 and big.json()["error"]["code"] == "too_large"
    assert httpx.get(url + "/v1/embeddings").json()["error"]["code"] == "not_found"
    # Outside /v1/ errors keep Almanac's own shape.
    assert set(httpx.get(url + "/jobs/nope").json()) == {"error", "message", "details"}
    guarded = Served(served[1], token="s3cret")
    try:
        with pytest.raises(openai.AuthenticationError):
            guarded.client("wrong").models.list()
        assert len(guarded.client("s3cret").models.list().data) == 3
    finally:
        guarded.close()


# -- one key for a request and a batch line ----------------------------------------------------


BODIES = [
    (COMPLETIONS, {"prompt": "plum:"}),
    (COMPLETIONS, {"prompt": ["plum:"], "max_tokens": 8, "temperature": 0, "seed": 5}),
    (COMPLETIONS, {"prompt": "plum:", "n": 3, "temperature": 0.7, "stop": "\n", "top_p": 0.9}),
    (COMPLETIONS, {"prompt": "plum:", "logprobs": 2, "max_tokens": 4}),
    (CHAT, {"messages": MESSAGES}),
    (CHAT, {"messages": [{"role": "developer", "content": [{"type": "text", "text": "x"}]},
                         {"role": "user", "content": "plum"}],
            "max_completion_tokens": 5, "response_format": {"type": "json_object"}}),
    (CHAT, {"messages": MESSAGES, "logprobs": True, "top_logprobs": 2, "user": "someone"}),
]


def test_a_request_and_a_batch_line_with_the_same_body_have_one_key(tmp_path: Path) -> None:
    """The miss store turns misses into the batch lines `misses run` plans: the keys its
    planning makes are the keys the server looked up."""
    from batch.run.spec.job import load_spec

    identity = model_identity("tiny", None, REVISION)
    with MissStore.open(tmp_path / "predictions") as store:
        expected = {}
        for i, (endpoint, body) in enumerate(BODIES):
            asked = read_request(endpoint, {"model": "tiny", **body, "stream": False})
            mid = asked.key("tiny", None)
            assert store.add(mid, "tiny", None, endpoint, asked.body_json()) == "recorded"
            expected[mid] = asked.key(identity, None)
            assert i == 0 or expected[mid] not in list(expected.values())[:-1]
        (job,) = write_jobs(store, tmp_path / "misses")
    assert job.name == "misses-tiny" and load_spec(job.spec.path).input.format == "openai-batch"
    planner = PredictionStore(tmp_path / "predictions")
    try:
        (plan,) = make_plans(job.spec, planner, [Target("tiny", "tiny", REVISION, identity)])
    finally:
        planner.close()
    assert plan.failures == []
    planned = {r.input_ids[0]: key for key, r in plan.requests.items()}
    assert planned == expected


def test_misses_jobs_are_named_for_their_model() -> None:
    assert job_name("tiny") == "misses-tiny"
    slashed = job_name("almanac/fruit-specialist")
    assert slashed.startswith("misses-almanac-fruit-specialist-") and "/" not in slashed
    assert job_name("a/b") != job_name("a-b") and len(job_name("x" * 300)) <= 128


def test_misses_clear_and_an_empty_run_on_the_command_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    cleared = CliRunner().invoke(cli, ["--home", str(home), "misses", "clear"])
    assert cleared.exit_code == 0 and "0 misses cleared" in cleared.stderr
    assert not (home / "predictions" / "misses.db").exists()  # nothing recorded: nothing made
    with MissStore.open(home / "predictions") as store:
        for model in ("tiny", "other"):
            asked = read_request(COMPLETIONS, {"model": model, "prompt": "plum:"})
            store.add(asked.key(model, None), model, None, COMPLETIONS, asked.body_json())
    cleared = CliRunner().invoke(cli, ["--home", str(home), "misses", "clear", "--model", "tiny"])
    assert cleared.exit_code == 0 and "1 miss cleared" in cleared.stderr
    assert [m["model"] for m in _misses(home)["misses"]] == ["other"]
    bad = CliRunner().invoke(cli, ["--home", str(home), "misses", "run", "--engine", "max_model_len"])
    assert bad.exit_code == 2 and "--engine" in bad.output and "NAME=VALUE" in bad.output
    nothing = CliRunner().invoke(cli, ["--home", str(home), "misses", "run", "--model", "tiny",
                                       "--json"])
    assert nothing.exit_code == 0 and json.loads(nothing.stdout) == []

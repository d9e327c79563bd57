"""Planning a run against a real prediction store: which rows are cached, which can be
copied (from another job, or from an earlier version of the same input), which must be
generated, and which failed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import batch.run.plan
from batch.cache.schema import columns
from batch.cache.store import PredictionStore, ShardWriter
from batch.run.keys import request_key
from batch.run.plan import Plan, make_plan
from batch.run.spec.job import JobSpec, spec_from_dict

MODEL = "local:sha256:0000"
TEMPLATE = "{{ fruit }}:"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[PredictionStore]:
    s = PredictionStore(tmp_path / "predictions")
    yield s
    s.close()


def dataset(tmp_path: Path, rows: list[dict[str, Any] | str], name: str = "fruits.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def spec(tmp_path: Path, *, name: str = "fruits", input_name: str = "fruits.jsonl",
         input_format: str | None = None, template: str = TEMPLATE, **extra: Any) -> JobSpec:
    data: dict[str, Any] = {"name": name, "model": "tiny", "input": {"path": input_name},
                            "prompt": {"template": template}, **extra}
    if input_format:
        data["input"]["format"] = input_format
        del data["prompt"]
    return spec_from_dict(data, tmp_path / f"{name}.toml")


def plan_for(job: JobSpec, store: PredictionStore, *, model: str = MODEL,
             adapter: str | None = None, **kw: Any) -> Plan:
    return make_plan(job, store, model_identity=model, revision="sha256:0000",
                     adapter_identity=adapter, **kw)


def record(job: str, input_id: str, key: str, run_id: str, *, prompt: Any = None,
           output: str | None = None, error: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {name: None for name in columns()}
    out.update(key=key, job=job, input_id=input_id, model="tiny", revision="sha256:0000",
               prompt=prompt if prompt is None or isinstance(prompt, str) else json.dumps(prompt),
               output=output, finish_reason=None if error else "stop", run_id=run_id,
               created_at=datetime.now(UTC), error=error)
    return out


def commit(store: PredictionStore, plan: Plan, *, run_id: str = "r" * 32,
           engine_fails: frozenset[str] | set[str] = frozenset()) -> None:
    """What a run writes for a plan, with a pretend engine that answers `<prompt> ok`."""
    with ShardWriter(store, plan.job, run_id, 100, 10) as writer:
        sources = store.read_rows([src for _, _, src in plan.copies])
        for (input_id, _, _), source in zip(plan.copies, sources, strict=True):
            writer.add({**source, "job": plan.job, "input_id": input_id, "run_id": run_id})
        for failure in plan.failures:
            writer.add(record(plan.job, failure.input_id, failure.key, run_id, error=failure.error))
        for request in plan.requests.values():
            for input_id in request.input_ids:
                failed = input_id in engine_fails
                writer.add(record(plan.job, input_id, request.key, run_id, prompt=request.prompt,
                                  output=None if failed else f"{request.prompt} ok",
                                  error="engine error" if failed else None))


FRUITS = [{"id": "a", "fruit": "peach"}, {"id": "b", "fruit": "apple"}, {"id": "c", "fruit": "fig"}]


# -- missing and cached -----------------------------------------------------------------------


def test_first_plan_has_every_row_missing_with_keys_over_model_prompt_and_sampling(
    tmp_path: Path, store: PredictionStore,
) -> None:
    dataset(tmp_path, FRUITS)
    job = spec(tmp_path, sampling={"max_tokens": 4, "temperature": 0})
    plan = plan_for(job, store)

    assert plan.summary() == {"inputs": 3, "cached": 0, "copy": 0, "missing": 3,
                              "distinct_missing": 3, "invalid": 0, "failed_before": 0}
    by_input = {r.input_ids[0]: r for r in plan.requests.values()}
    assert by_input["a"].prompt == "peach:"
    assert by_input["a"].sampling == job.sampling
    assert by_input["a"].key == request_key(MODEL, None, "peach:", job.sampling)
    assert (plan.job, plan.model, plan.revision) == ("fruits", "tiny", "sha256:0000")


def test_after_a_run_every_row_is_cached(tmp_path: Path, store: PredictionStore) -> None:
    dataset(tmp_path, FRUITS)
    job = spec(tmp_path)
    commit(store, plan_for(job, store))

    plan = plan_for(job, store)
    assert plan.summary() == {"inputs": 3, "cached": 3, "copy": 0, "missing": 0,
                              "distinct_missing": 0, "invalid": 0, "failed_before": 0}
    assert not plan.requests and not plan.copies


def test_a_new_row_is_the_only_one_missing(tmp_path: Path, store: PredictionStore) -> None:
    dataset(tmp_path, FRUITS)
    job = spec(tmp_path)
    commit(store, plan_for(job, store))
    dataset(tmp_path, [*FRUITS, {"id": "d", "fruit": "plum"}])

    plan = plan_for(job, store)
    assert plan.cached == 3
    assert [r.input_ids for r in plan.requests.values()] == [["d"]]


@pytest.mark.parametrize(
    "change",
    [{"model": "local:sha256:1111"}, {"adapter": "lora:sha256:2222"},
     {"sampling": {"max_tokens": 5}}, {"template": "Fruit: {{ fruit }}"}],
)
def test_anything_in_the_key_changing_makes_rows_missing_again(
    tmp_path: Path, store: PredictionStore, change: dict[str, Any],
) -> None:
    dataset(tmp_path, FRUITS)
    commit(store, plan_for(spec(tmp_path), store))

    job = spec(tmp_path, **{k: v for k, v in change.items() if k in ("sampling", "template")})
    plan = plan_for(job, store, model=change.get("model", MODEL), adapter=change.get("adapter"))
    assert plan.cached == 0 and plan.missing_rows == 3 and not plan.copies


# -- copies -----------------------------------------------------------------------------------


def test_rows_generated_by_another_job_are_copied_not_generated(
    tmp_path: Path, store: PredictionStore,
) -> None:
    dataset(tmp_path, FRUITS)
    first = plan_for(spec(tmp_path), store)
    commit(store, first)

    again = plan_for(spec(tmp_path, name="fruits-again"), store)

    assert again.summary()["copy"] == 3 and again.missing_rows == 0 and again.cached == 0
    copies = {input_id: (key, src) for input_id, key, src in again.copies}
    key_a = next(r.key for r in first.requests.values() if r.input_ids == ["a"])
    key, src = copies["a"]
    assert key == key_a
    assert (src.job, src.input_id, src.key, src.failed) == ("fruits", "a", key_a, False)
    assert store.read_rows([src])[0]["output"] == "peach: ok"


def test_failed_rows_of_another_job_are_not_copied(tmp_path: Path, store: PredictionStore) -> None:
    dataset(tmp_path, FRUITS)
    commit(store, plan_for(spec(tmp_path), store), engine_fails={"a"})

    again = plan_for(spec(tmp_path, name="fruits-again"), store)
    assert sorted(i for i, _, _ in again.copies) == ["b", "c"]
    assert [r.input_ids for r in again.requests.values()] == [["a"]]


def test_a_prompt_changed_then_changed_back_is_copied_from_its_earlier_version(
        tmp_path: Path, store: PredictionStore) -> None:
    dataset(tmp_path, FRUITS)
    job = spec(tmp_path)
    v1 = plan_for(job, store)
    commit(store, v1, run_id="1" * 32)
    old = store.latest_for("fruits", "tiny", ["a"])["a"]

    dataset(tmp_path, [{"id": "a", "fruit": "plum"}, *FRUITS[1:]])
    v2 = plan_for(job, store)
    assert v2.cached == 2 and [r.input_ids for r in v2.requests.values()] == [["a"]]
    commit(store, v2, run_id="2" * 32)

    dataset(tmp_path, FRUITS)
    back = plan_for(job, store)
    assert back.copies == [("a", old.key, old)]
    assert back.summary() == {"inputs": 3, "cached": 2, "copy": 1, "missing": 0,
                              "distinct_missing": 0, "invalid": 0, "failed_before": 0}
    commit(store, back, run_id="3" * 32)
    # Written again by the run that chose it: the files alone say it is the latest.
    latest = store.latest_for("fruits", "tiny", ["a"])["a"]
    assert (latest.key, latest.failed) == (old.key, False) and latest.shard != old.shard
    assert store.read_rows([latest])[0]["output"] == "peach: ok"
    assert plan_for(job, store).cached == 3


# -- one job's own rows -----------------------------------------------------------------------


def test_identical_prompts_under_two_ids_are_one_request(tmp_path: Path, store: PredictionStore) -> None:
    dataset(tmp_path, [{"id": "a", "fruit": "peach"}, {"id": "b", "fruit": "fig"},
                       {"id": "c", "fruit": "peach"}])
    plan = plan_for(spec(tmp_path), store)
    assert sorted(r.input_ids for r in plan.requests.values()) == [["a", "c"], ["b"]]
    assert plan.summary()["missing"] == 3 and plan.summary()["distinct_missing"] == 2

    commit(store, plan)
    assert plan_for(spec(tmp_path), store).cached == 3


def test_identical_prompts_in_different_plan_chunks_are_still_one_request(
    tmp_path: Path, store: PredictionStore, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(batch.run.plan, "PLAN_CHUNK", 2)
    dataset(tmp_path, [{"id": "a", "fruit": "peach"}, {"id": "b", "fruit": "fig"},
                       {"id": "c", "fruit": "plum"}, {"id": "d", "fruit": "peach"},
                       {"id": "a", "fruit": "kiwi"}])
    plan = plan_for(spec(tmp_path), store)
    assert sorted(r.input_ids for r in plan.requests.values()) == [["a", "d"], ["b"], ["c"]]
    assert [f.input_id for f in plan.failures] == ["<row 5>"]  # duplicates are found across chunks
    assert plan.inputs == 5


def test_a_new_id_with_a_prompt_already_cached_in_the_job_is_copied(
    tmp_path: Path, store: PredictionStore,
) -> None:
    dataset(tmp_path, FRUITS)
    commit(store, plan_for(spec(tmp_path), store))
    dataset(tmp_path, [*FRUITS, {"id": "d", "fruit": "peach"}])

    plan = plan_for(spec(tmp_path), store)
    assert plan.cached == 3 and not plan.requests
    [(input_id, _, src)] = plan.copies
    assert (input_id, src.job, src.input_id) == ("d", "fruits", "a")


def test_a_duplicate_id_fails_with_a_clear_reason_and_the_first_row_runs(
    tmp_path: Path, store: PredictionStore,
) -> None:
    dataset(tmp_path, [{"id": "a", "fruit": "peach"}, {"id": "b", "fruit": "fig"},
                       {"id": "a", "fruit": "plum"}])
    plan = plan_for(spec(tmp_path), store)

    [failure] = plan.failures
    assert failure.input_id == "<row 3>"
    assert failure.error == "duplicate id 'a' (first at row 1)"
    assert sorted(r.prompt for r in plan.requests.values()) == ["fig:", "peach:"]
    assert plan.summary()["invalid"] == 1

    commit(store, plan)
    again = plan_for(spec(tmp_path), store)
    assert (again.cached, again.failed_before, again.failures) == (2, 1, [])


def test_a_broken_duplicate_of_a_good_id_does_not_overwrite_its_prediction(
    tmp_path: Path, store: PredictionStore,
) -> None:
    dataset(tmp_path, [
        {"custom_id": "req-1", "body": {"prompt": "peach:"}},
        {"custom_id": "req-1"},  # no body: an error row that still carries the id
    ], name="requests.jsonl")
    job = spec(tmp_path, input_name="requests.jsonl", input_format="openai-batch")
    plan = plan_for(job, store)
    assert [r.input_ids for r in plan.requests.values()] == [["req-1"]]
    [failure] = plan.failures
    assert failure.input_id == "<row 2>"
    assert "duplicate id 'req-1'" in failure.error and "missing body" in failure.error

    commit(store, plan)
    assert store.latest_for(job.name, "tiny", ["req-1"])["req-1"].failed is False
    assert plan_for(job, store).cached == 1


# -- failures ---------------------------------------------------------------------------------


def test_a_lone_surrogate_fails_its_row_alone(tmp_path: Path, store: PredictionStore) -> None:
    """`"\\ud800"` is valid JSON but not Unicode text: in a field, an id or a key it fails its
    own row, and a surrogate pair (an emoji) is read as the character it spells."""
    dataset(tmp_path, [
        {"id": "a", "fruit": "peach"},
        r'{"id": "b", "fruit": "\ud800"}',
        r'{"id": "\udfff", "fruit": "fig"}',
        r'{"id": "d", "fruit": "plum", "\ud800": {"x": 1}}',
        r'{"id": "e", "fruit": "\ud83c\udf51"}',
    ])
    plan = plan_for(spec(tmp_path), store)

    assert sorted(r.prompt for r in plan.requests.values()) == ["peach:", "\U0001f351:"]
    assert [f.input_id for f in plan.failures] == ["<row 2>", "<row 3>", "<row 4>"]
    assert all("lone surrogate" in f.error for f in plan.failures)
    assert "field fruit " in plan.failures[0].error and "field id " in plan.failures[1].error
    commit(store, plan)  # failures are keyed and written like any other
    assert plan_for(spec(tmp_path), store).failed_before == 3


def test_a_lone_surrogate_in_a_batch_line_or_a_rendered_prompt_fails_its_row_alone(
    tmp_path: Path, store: PredictionStore,
) -> None:
    dataset(tmp_path, [
        r'{"custom_id": "\ud800", "body": {"prompt": "peach:"}}',
        r'{"custom_id": "r2", "body": {"messages": [{"role": "user", "content": "\udc00"}]}}',
        {"custom_id": "r3", "body": {"prompt": "fig:"}},
    ], name="requests.jsonl")
    job = spec(tmp_path, input_name="requests.jsonl", input_format="openai-batch")
    plan = plan_for(job, store)
    assert [r.input_ids for r in plan.requests.values()] == [["r3"]]
    assert [f.input_id for f in plan.failures] == ["<row 1>", "<row 2>"]
    assert "field custom_id" in plan.failures[0].error
    assert "field body.messages[0].content" in plan.failures[1].error

    dataset(tmp_path, [{"id": "a", "fruit": "peach"}])
    made = plan_for(spec(tmp_path, template='{{ fruit }}{{ "\\ud800" }}'), store)
    [failure] = made.failures
    assert failure.input_id == "a" and "lone surrogate ('\\ud800')" in failure.error
    commit(store, made)


def test_ids_made_for_rows_without_one_never_collide_with_real_ids(
    tmp_path: Path, store: PredictionStore,
) -> None:
    dataset(tmp_path, [
        "{broken",  # unreadable: named by its position
        {"id": "a", "fruit": "peach"},
        {"id": "a", "fruit": "fig"},  # a duplicate: named by its position too
        {"id": "line-1", "fruit": "plum"},  # real ids that look like older made-up names
        {"id": "a@3", "fruit": "pear"},
        {"id": "<row 1>", "fruit": "kiwi"},  # the made-up form itself is refused
    ])
    plan = plan_for(spec(tmp_path), store)

    assert sorted(i for r in plan.requests.values() for i in r.input_ids) == ["a", "a@3", "line-1"]
    assert [f.input_id for f in plan.failures] == ["<row 1>", "<row 3>", "<row 6>"]
    assert "has the form that names rows without a usable id" in plan.failures[2].error


def test_unreadable_and_unrenderable_rows_are_failures_with_their_reason(
    tmp_path: Path, store: PredictionStore,
) -> None:
    dataset(tmp_path, [{"id": "a", "fruit": "peach"}, "{broken", {"id": "c", "colour": "red"}])
    plan = plan_for(spec(tmp_path), store)

    assert [(f.input_id, f.error.split(":")[0]) for f in plan.failures] == [
        ("<row 2>", "line 2"), ("c", "template error"),
    ]
    assert "'fruit' is undefined" in plan.failures[1].error
    assert all(f.key.startswith("x") for f in plan.failures)
    assert plan.summary()["invalid"] == 2 and plan.missing_rows == 1


def test_failures_recorded_before_are_counted_not_written_again(
    tmp_path: Path, store: PredictionStore,
) -> None:
    dataset(tmp_path, [{"id": "a", "fruit": "peach"}, {"id": "b", "colour": "red"}])
    job = spec(tmp_path)
    commit(store, plan_for(job, store))

    plan = plan_for(job, store)
    assert (plan.cached, plan.failed_before, plan.failures, plan.requests) == (1, 1, [], {})
    assert plan.summary()["invalid"] == 0


def test_a_row_that_stops_rendering_is_a_new_failure(tmp_path: Path, store: PredictionStore) -> None:
    dataset(tmp_path, FRUITS)
    commit(store, plan_for(spec(tmp_path), store))
    dataset(tmp_path, [{"id": "a", "colour": "red"}, *FRUITS[1:]])

    plan = plan_for(spec(tmp_path), store)
    assert [f.input_id for f in plan.failures] == ["a"] and plan.cached == 2
    commit(store, plan)
    assert store.latest_for("fruits", "tiny", ["a"])["a"].failed is True


def test_engine_failures_wait_for_retry_failed(tmp_path: Path, store: PredictionStore) -> None:
    dataset(tmp_path, FRUITS)
    job = spec(tmp_path)
    commit(store, plan_for(job, store), engine_fails={"b"})

    plain = plan_for(job, store)
    assert (plain.cached, plain.failed_before, plain.requests) == (2, 1, {})

    retry = plan_for(job, store, retry_failed=True)
    assert (retry.cached, retry.failed_before) == (2, 0)
    [request] = retry.requests.values()
    assert request.input_ids == ["b"] and request.prompt == "apple:"

    commit(store, retry)
    assert plan_for(job, store).summary()["cached"] == 3


def test_retry_failed_copies_a_success_from_another_job_instead_of_generating(
    tmp_path: Path, store: PredictionStore,
) -> None:
    dataset(tmp_path, FRUITS)
    commit(store, plan_for(spec(tmp_path), store), engine_fails={"b"})
    commit(store, plan_for(spec(tmp_path, name="other"), store))  # b succeeded there

    retry = plan_for(spec(tmp_path), store, retry_failed=True)
    assert not retry.requests
    [(input_id, _, src)] = retry.copies
    assert (input_id, src.job) == ("b", "other")


def test_retry_failed_records_render_failures_again(tmp_path: Path, store: PredictionStore) -> None:
    dataset(tmp_path, [{"id": "a", "colour": "red"}])
    commit(store, plan_for(spec(tmp_path), store))

    retry = plan_for(spec(tmp_path), store, retry_failed=True)
    assert [f.input_id for f in retry.failures] == ["a"] and retry.failed_before == 0


# -- limit and OpenAI batch inputs ------------------------------------------------------------


def test_limit_plans_only_the_first_rows(tmp_path: Path, store: PredictionStore) -> None:
    dataset(tmp_path, [{"id": f"r{i}", "fruit": f"fruit {i}"} for i in range(5)])
    plan = plan_for(spec(tmp_path), store, limit=2)
    assert plan.inputs == 2
    assert sorted(i for r in plan.requests.values() for i in r.input_ids) == ["r0", "r1"]

    commit(store, plan)
    rest = plan_for(spec(tmp_path), store)
    assert rest.cached == 2 and rest.missing_rows == 3


def test_openai_batch_rows_key_on_their_own_prompt_and_sampling(
    tmp_path: Path, store: PredictionStore,
) -> None:
    messages = [{"role": "user", "content": "Family of peach?"}]
    dataset(tmp_path, [
        {"custom_id": "cold", "body": {"messages": messages, "temperature": 0, "top_p": 0.3}},
        {"custom_id": "cold-too", "body": {"messages": messages, "temperature": 0.0}},
        {"custom_id": "hot", "body": {"messages": messages, "temperature": 0.9, "max_tokens": 3}},
        {"custom_id": "odd", "body": {"prompt": "p", "temperature": "hot"}},
    ], name="requests.jsonl")
    job = spec(tmp_path, input_name="requests.jsonl", input_format="openai-batch")
    plan = plan_for(job, store)

    groups = {tuple(r.input_ids): r for r in plan.requests.values()}
    assert set(groups) == {("cold", "cold-too"), ("hot",)}
    assert groups[("cold", "cold-too")].prompt == messages
    assert groups[("hot",)].sampling.max_tokens == 3
    assert groups[("hot",)].sampling.temperature == 0.9
    [failure] = plan.failures
    assert failure.input_id == "odd" and failure.error.startswith("invalid sampling in body")


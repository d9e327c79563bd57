"""Job specs: a TOML file validated once, at the edge, into typed settings.

Bad specs fail with a SpecError naming the file, the field path and the problem;
the CLI maps them to exit code 2 before any job runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from almanac.cli import cli
from batch.run.keys import request_key
from batch.run.spec.job import SpecError, load_spec
from batch.run.spec.settings import SAMPLING_NAMES, EngineOptions, Sampling

GOOD = """
name = "fruit-families"
model = "tiny"

[input]
path = "fruits.jsonl"

[prompt]
template = "{{ fruit }}:"
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def job(tmp_path: Path, text: str, name: str = "job.toml") -> Path:
    return write(tmp_path / name, text)


# -- valid specs ------------------------------------------------------------------------------


def test_paths_resolve_relative_to_the_job_file_not_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "data" / "fruits.jsonl", '{"id": "a", "fruit": "peach"}\n')
    write(tmp_path / "jobs" / "corpus.md", "Fruit families.\n")
    path = job(tmp_path / "jobs", """
name = "fruit-families"
model = "tiny"
[input]
path = "../data/fruits.jsonl"
[prompt]
template = "{{ context }}{{ fruit }}:"
context_file = "corpus.md"
examples = [{ fruit = "peach", family = "drupe" }]
""")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    spec = load_spec(Path("..") / "jobs" / "job.toml")

    assert spec.path == path.resolve()
    assert spec.input.path == (tmp_path / "data" / "fruits.jsonl").resolve()
    assert spec.input.format == "jsonl"
    assert spec.input.id_field == "id"
    assert spec.prompt.context == "Fruit families.\n"
    assert spec.prompt.examples == [{"fruit": "peach", "family": "drupe"}]
    assert spec.name == "fruit-families" and spec.model == "tiny"
    assert spec.shard_rows == 10_000 and not spec.chat


@pytest.mark.parametrize(
    ("filename", "fmt"),
    [("in.jsonl", "jsonl"), ("in.ndjson", "jsonl"), ("in.csv", "csv"), ("IN.CSV", "csv"),
     ("in.parquet", "parquet")],
)
def test_input_format_is_inferred_from_the_suffix(tmp_path: Path, filename: str, fmt: str) -> None:
    spec = load_spec(job(tmp_path, GOOD.replace("fruits.jsonl", filename)))
    assert spec.input.format == fmt


def test_explicit_openai_batch_format_needs_no_prompt(tmp_path: Path) -> None:
    spec = load_spec(job(tmp_path, """
name = "batch"
model = "tiny"
[input]
path = "requests.jsonl"
format = "openai-batch"
"""))
    assert spec.input.format == "openai-batch"
    assert spec.prompt.template is None and spec.prompt.messages is None


def test_chat_messages_make_a_chat_spec(tmp_path: Path) -> None:
    spec = load_spec(job(tmp_path, """
name = "chat"
model = "tiny"
[input]
path = "q.jsonl"
[prompt]
messages = [{ role = "system", content = "Be brief." }, { role = "user", content = "{{ q }}" }]
"""))
    assert spec.chat
    assert spec.prompt.messages == [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "{{ q }}"},
    ]


def test_sampling_is_normalized_with_every_default_filled_and_stop_sorted(tmp_path: Path) -> None:
    spec = load_spec(job(tmp_path, GOOD + """
[sampling]
max_tokens = 8
temperature = 1
stop = ["b", "\\n", "a", "b"]
"""))
    assert set(spec.sampling.as_dict()) == set(SAMPLING_NAMES)
    assert spec.sampling.as_dict()["stop"] == ["\n", "a", "b"]
    assert spec.sampling.max_tokens == 8
    assert spec.sampling.temperature == 1.0 and isinstance(spec.sampling.temperature, float)
    assert spec.sampling.top_p == 1.0 and spec.sampling.n == 1


def test_greedy_sampling_drops_top_p_top_k_and_seed_so_keys_agree(tmp_path: Path) -> None:
    terse = load_spec(job(tmp_path, GOOD + "[sampling]\ntemperature = 0\n", "a.toml"))
    verbose = load_spec(job(tmp_path, GOOD + """
[sampling]
temperature = 0.0
top_p = 0.5
top_k = 40
min_p = 0.1
seed = 7
stop = []
""", "b.toml"))
    assert terse.sampling == verbose.sampling
    assert verbose.sampling.seed is None and verbose.sampling.top_k == -1
    assert request_key("m", None, "p", terse.sampling) == request_key("m", None, "p", verbose.sampling)


def test_sampling_at_a_positive_temperature_keeps_top_p_and_seed() -> None:
    hot = Sampling(temperature=0.7, top_p=0.5, seed=7)
    assert hot.top_p == 0.5 and hot.seed == 7
    assert request_key("m", None, "p", hot) != request_key(
        "m", None, "p", Sampling(temperature=0.7, top_p=0.5, seed=8)
    )


def test_adapter_directory_is_resolved_relative_to_the_job_file(tmp_path: Path) -> None:
    (tmp_path / "lora").mkdir()
    spec = load_spec(job(tmp_path, 'adapter = "lora"\n' + GOOD))
    assert spec.adapter == str((tmp_path / "lora").resolve())
    hub = load_spec(job(tmp_path, 'adapter = "org/some-lora"\n' + GOOD, "hub.toml"))
    assert hub.adapter == "org/some-lora"


# -- invalid specs ----------------------------------------------------------------------------

INVALID = {
    "missing input": (
        'name = "j"\nmodel = "m"\n[prompt]\ntemplate = "x"\n',
        ["(top level)", "'input' is a required property"],
    ),
    "negative temperature": (
        GOOD + "[sampling]\ntemperature = -1\n",
        ["sampling.temperature", "-1 is less than the minimum of 0"],
    ),
    "choice and regex": (
        GOOD + '[sampling]\nchoice = ["a", "b"]\nregex = "a|b"\n',
        ["sampling:", "choice, regex and json_schema exclude each other"],
    ),
    "unknown top-level field": (
        GOOD.replace('model = "tiny"', 'model = "tiny"\ncolour = "red"'),
        ["(top level)", "'colour' was unexpected"],
    ),
    "name with a slash": (
        GOOD.replace('"fruit-families"', '"fruits/families"'),
        ["name:", "'fruits/families' does not match"],
    ),
    "template and messages": (
        GOOD + 'messages = [{ role = "user", content = "{{ fruit }}" }]\n',
        ["prompt:", "give either template or messages, not both"],
    ),
    "no prompt": (
        'name = "j"\nmodel = "m"\n[input]\npath = "a.jsonl"\n',
        ["(top level)", "'prompt' is a required property"],
    ),
    "prompt with only examples": (
        'name = "j"\nmodel = "m"\n[input]\npath = "a.jsonl"\n[prompt]\nexamples = []\n',
        ["prompt:", "needs a template, messages or a recipe"],
    ),
    "input both a file and a job": (
        GOOD.replace('path = "fruits.jsonl"', 'path = "fruits.jsonl"\njob = "teacher"'),
        ["input:", "give `path` (a file, with format and id_field) or `job`"],
    ),
    "input neither a file nor a job": (
        'name = "j"\nmodel = "m"\n[input]\nid_field = "k"\n[prompt]\ntemplate = "x"\n',
        ["input:", "give `path`"],
    ),
    "unknown recipe": (
        GOOD.replace('template = "{{ fruit }}:"', 'recipe = "no-such"'),
        ["prompt.recipe", "no recipe 'no-such'", "shipped: global, implications, local"],
    ),
    "engine.model": (
        GOOD + '[engine]\nmodel = "other/model"\n',
        ["engine.model:", "not allowed"],
    ),
    "engine.enable_lora": (
        GOOD + "[engine]\nenable_lora = true\n",
        ["engine.enable_lora:", "not allowed"],
    ),
    "bad message role": (
        GOOD.replace('template = "{{ fruit }}:"',
                     'messages = [{ role = "robot", content = "{{ fruit }}" }]'),
        ["prompt.messages[0].role", "'robot' is not one of"],
    ),
    "stop as a string": (
        GOOD + '[sampling]\nstop = "\\n"\n',
        ["sampling.stop", "is not of type 'array'"],
    ),
    "zero shard rows": (
        GOOD + "[output]\nshard_rows = 0\n",
        ["output.shard_rows", "less than the minimum of 1"],
    ),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_spec_names_the_file_the_field_path_and_the_problem(tmp_path: Path, case: str) -> None:
    text, expected = INVALID[case]
    path = job(tmp_path, text)
    with pytest.raises(SpecError) as err:
        load_spec(path)
    message = str(err.value)
    assert str(path) in message
    for part in expected:
        assert part in message


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as err:
        load_spec(job(tmp_path, GOOD + "[sampling]\ntemperature = -1\nmax_tokens = 0\n"))
    assert "sampling.temperature" in str(err.value) and "sampling.max_tokens" in str(err.value)


def test_unreadable_context_file_is_a_spec_error(tmp_path: Path) -> None:
    path = job(tmp_path, GOOD + 'context_file = "missing.md"\n')
    with pytest.raises(SpecError, match=r"prompt\.context_file: cannot read 'missing.md'") as err:
        load_spec(path)
    assert str(path) in str(err.value)


def test_unknown_input_suffix_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"input\.path: cannot tell the format of 'fruits.xlsx'"):
        load_spec(job(tmp_path, GOOD.replace("fruits.jsonl", "fruits.xlsx")))


def test_template_syntax_error_fails_the_spec_when_it_is_loaded(tmp_path: Path) -> None:
    path = job(tmp_path, GOOD.replace("{{ fruit }}:", "{{ fruit :"))
    with pytest.raises(SpecError, match=r"prompt\.template: template syntax error at line 1") as err:
        load_spec(path)
    assert str(path) in str(err.value)


def test_message_syntax_error_names_the_message(tmp_path: Path) -> None:
    path = job(tmp_path, GOOD.replace(
        'template = "{{ fruit }}:"',
        'messages = [{ role = "system", content = "ok" }, { role = "user", content = "{% if %}" }]',
    ))
    with pytest.raises(SpecError, match=r"prompt\.messages\[1\]\.content: template syntax error"):
        load_spec(path)


def test_missing_and_malformed_job_files_are_spec_errors(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no such job file"):
        load_spec(tmp_path / "nope.toml")
    with pytest.raises(SpecError, match="not valid TOML"):
        load_spec(job(tmp_path, 'name = "unterminated\n'))
    with pytest.raises(SpecError, match="cannot read the job file"):
        load_spec(tmp_path)  # a directory


# -- through the CLI --------------------------------------------------------------------------


def test_run_with_an_invalid_spec_exits_2_naming_the_field(tmp_path: Path) -> None:
    path = job(tmp_path, GOOD + "[sampling]\ntemperature = -1\n", "bad.toml")
    result = CliRunner().invoke(cli, ["run", str(path)])
    assert result.exit_code == 2, result.output
    assert "sampling.temperature" in result.output
    assert "Traceback" not in result.output


def test_run_checks_every_spec_before_running_any(tmp_path: Path, home: Path) -> None:
    write(tmp_path / "fruits.jsonl", '{"id": "a", "fruit": "peach"}\n')
    good = job(tmp_path, GOOD, "good.toml")
    bad = job(tmp_path, GOOD.replace("fruit-families", "other").replace("{{ fruit }}", "{{ fruit"),
              "bad.toml")
    result = CliRunner().invoke(cli, ["run", str(good), str(bad)])
    # Not exit 1 for the unknown model "tiny": the good job never started.
    assert result.exit_code == 2, result.output
    assert "prompt.template" in result.output and str(bad.resolve()) in result.output
    assert not (home / "predictions" / "fruit-families").exists()


def make_local_model(directory: Path) -> Path:
    import numpy as np
    from safetensors.numpy import save_file

    directory.mkdir(parents=True)
    (directory / "config.json").write_text(json.dumps(
        {"architectures": ["LlamaForCausalLM"], "max_position_embeddings": 256}
    ))
    save_file({"embed.weight": np.zeros((8, 4), dtype=np.float32)},
              str(directory / "model.safetensors"))
    return directory


DRY_RUN = """
import sys
from almanac.cli import cli
try:
    cli.main(["run", sys.argv[1], "--dry-run", "--json"], prog_name="almanac",
             standalone_mode=False)
finally:
    print("VLLM_IMPORTED=" + str("vllm" in sys.modules))
"""


def test_dry_run_on_a_catalog_model_plans_without_importing_vllm(tmp_path: Path, home: Path) -> None:
    model = make_local_model(tmp_path / "tiny-model")
    added = CliRunner().invoke(cli, ["models", "add", "--path", str(model), "--name", "tiny"])
    assert added.exit_code == 0, added.output
    write(tmp_path / "fruits.jsonl",
          '{"id": "a", "fruit": "peach"}\n{"id": "b", "fruit": "apple"}\n'
          '{"id": "c", "fruit": "peach"}\n{not json\n')
    path = job(tmp_path, GOOD)

    proc = subprocess.run(
        [sys.executable, "-c", DRY_RUN, str(path)], cwd=tmp_path, env=os.environ.copy(),
        capture_output=True, text=True, timeout=120,
    )

    assert proc.returncode == 0, proc.stderr
    body, _, flag = proc.stdout.rstrip("\n").rpartition("\n")
    assert flag == "VLLM_IMPORTED=False"
    summary = json.loads(body)
    assert summary["status"] == "planned" and summary["engine_started"] is False
    assert summary["plan"] == {
        "inputs": 4, "cached": 0, "copy": 0, "missing": 3, "distinct_missing": 2,
        "invalid": 1, "failed_before": 0, "candidates": 1,
    }
    assert not (home / "predictions" / "fruit-families").exists()  # a dry run writes nothing


# -- cache keys never change --------------------------------------------------------------------

# Computed by the code before sampling became a typed object; a change here means every
# cached prediction would be generated again.
PINNED_KEYS = {
    "defaults": ({}, "9a20ccc7e2129e83fb0f5801b38a51295d1fc88ebd56e9c704993c25c79b9a40"),
    "greedy": ({"max_tokens": 8, "temperature": 0, "top_p": 0.5, "seed": 7, "stop": ["\n"]},
               "6d5b37d82f6aca2f80b0b46683ae9a5f9e7c995af4965d246daa5b3a6969a0dc"),
    "hot": ({"max_tokens": 32, "temperature": 0.7, "top_p": 0.9, "top_k": 40, "min_p": 0.05,
             "seed": 3, "stop": ["b", "a", "b"], "n": 2, "logprobs": 1, "presence_penalty": 0.5,
             "frequency_penalty": -1, "repetition_penalty": 1.1},
            "0515de4e565746ed7311144090d4b497704536633871f07d2e3461ade6d0e297"),
    "choice": ({"temperature": 0, "choice": ["drupe", "pome"]},
               "910ab6565f724f874596e7453a11cdb5e0fe65d8046dc6bcd5c2fce036dd4075"),
    "json_schema": ({"temperature": 0,
                     "json_schema": {"type": "object", "properties": {"a": {"type": "integer"}}}},
                    "2d7c23d3e0b4d4f7aa507b5d6a19ed936490cddb4a57009e4268ac9e77dc68ad"),
    "regex": ({"regex": "a|b", "temperature": 1},
              "1b017edf34d0aabc2fe6b8994692ebe51b901bb09f84ee93007ec167cf1ed52b"),
}


@pytest.mark.parametrize("case", sorted(PINNED_KEYS))
def test_request_keys_are_the_ones_earlier_versions_computed(case: str) -> None:
    raw, key = PINNED_KEYS[case]
    assert request_key("repo/m@abc", None, "peach:", Sampling.from_mapping(raw)) == key


def test_chat_and_adapter_keys_and_the_params_column_are_pinned() -> None:
    hot = Sampling.from_mapping(PINNED_KEYS["hot"][0])
    chat = [{"role": "user", "content": "Fig?"}]
    assert request_key("local:sha256:00", "lora:sha256:11", chat, hot) == (
        "94d510a4229cd7d29228f0b9bddf71c841ef764a45d1f53815ea42c34fba8db1")
    assert hot.params_json == json.dumps(hot.as_dict(), sort_keys=True) == (
        '{"choice": null, "frequency_penalty": -1.0, "json_schema": null, "logprobs": 1, '
        '"max_tokens": 32, "min_p": 0.05, "n": 2, "presence_penalty": 0.5, "regex": null, '
        '"repetition_penalty": 1.1, "seed": 3, "stop": ["a", "b"], "temperature": 0.7, '
        '"top_k": 40, "top_p": 0.9}')


def test_an_openai_batch_line_overriding_the_job_sampling_keeps_its_pinned_key() -> None:
    job = Sampling(temperature=0, max_tokens=8, stop=("\n",))
    merged = job.overridden({"temperature": 0.9, "max_tokens": 3, "stop": ["x"]})
    assert request_key("repo/m@abc", None, [{"role": "user", "content": "hi"}], merged) == (
        "35e196edfd80f2576b0487ff2f10fcfd97ef319622de1fb2e8ba2bd77acc57b1")


# -- typed settings ---------------------------------------------------------------------------


def test_sampling_is_checked_against_the_schema_whoever_builds_it() -> None:
    with pytest.raises(SpecError, match=r"^temperature: -1 is less than the minimum of 0$"):
        Sampling(temperature=-1)
    with pytest.raises(SpecError, match=r"^temperature: 'hot' is not of type 'number'$"):
        Sampling.from_mapping({"temperature": "hot"})
    with pytest.raises(SpecError, match="choice, regex and json_schema exclude each other"):
        Sampling(choice=("a",), regex="a")
    with pytest.raises(SpecError, match=r"^colour: not a sampling parameter$"):
        Sampling.from_mapping({"colour": "red"})


def test_sampling_is_frozen_and_equal_settings_are_one_engine_parameter_set() -> None:
    a = Sampling.from_mapping({"temperature": 0, "stop": ["b", "a"], "top_p": 0.2})
    b = Sampling(temperature=0.0, stop=("a", "b", "a"))
    assert a == b and hash(a) == hash(b) and a.stop == ("a", "b")
    with pytest.raises(AttributeError):
        a.temperature = 1.0  # type: ignore[misc]
    # An integral float is an integer to JSON Schema; vLLM takes only ints there.
    assert Sampling(max_tokens=5.0, n=2.0, temperature=1).max_tokens == 5  # type: ignore[arg-type]


def test_engine_options_are_typed_and_the_rest_pass_through_as_written(tmp_path: Path) -> None:
    spec = load_spec(job(tmp_path, GOOD + """
[engine]
max_model_len = 2048
gpu_memory_utilization = 1
dtype = "float32"
override_generation_config = { top_k = 5 }
hf_overrides = "[not json"
"""))
    assert spec.engine.max_model_len == 2048 and spec.engine.dtype == "float32"
    assert spec.engine.gpu_memory_utilization == 1.0
    assert spec.engine.as_dict() == {
        "max_model_len": 2048, "gpu_memory_utilization": 1.0, "dtype": "float32",
        "hf_overrides": "[not json", "override_generation_config": {"top_k": 5},
    }
    assert spec.engine == EngineOptions.from_mapping(spec.engine.as_dict())
    assert hash(spec.engine) == hash(EngineOptions.from_mapping(spec.engine.as_dict()))
    with pytest.raises(SpecError, match=r"^max_num_seqs: 0 is less than the minimum of 1$"):
        EngineOptions(max_num_seqs=0)

"""Bad input in a job: templates that recurse or allocate without bound, files that are
not files, enormous or broken sources, names and numbers out of range. Each is a
failed row (RenderError) or a refused spec (exit 2), found before the work it asks for
is done."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from almanac.cli import cli
from batch.run.spec.errors import SpecError
from batch.run.spec.job import load_spec
from batch.run.spec.prompts import PromptRenderer, PromptSpec, RenderError
from tests.cache_support import record, write
from tests.test_job_spec import GOOD, job
from tests.test_job_spec import write as write_text

# Each would take unbounded time or memory in a plain sandbox; the message says which bound
# refused it, before the work (a bound checked after allocating 10 GB would come too late).
HOSTILE_TEMPLATES = {
    "{{ 'a' * 10**10 }}": "would make a value of 10,000,000,000",
    "{{ fruit * 100000000 }}": "would make a value of",
    "{% macro f(x) %}{{ f(x) }}{% endmacro %}{{ f(1) }}": "recursion too deep",
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}":
        "more than 1,000,000 loop iterations",
    "{% set n = namespace(v=10) %}{% for i in range(40) %}{% set n.v = n.v * n.v %}{% endfor %}":
        "more than 100,000 bits",
    "{{ 'a'|center(1000000000) }}": "center would make a value of 1,000,000,000",
    "{{ fruit.ljust(10**9) }}": "ljust",
    "{{ '%999999999d' % 1 }}": "format width 999999999",
    "{{ '{:>999999999}'.format(1) }}": "format width 999999999",
    "{% set s = namespace(v='ab') %}{% for i in range(64) %}{% set s.v = s.v ~ s.v %}"
    "{% endfor %}": "~ would make a value",
    "{{ ([fruit * 1000000] * 1000)|join }}": "join would make a value",
    "{{ (fruit * 1000000)|replace('f', fruit * 1000000) }}": "replace would make a value",
    "{{ [1]|batch(1000000000, 'x')|list }}": "batch",
    "{{ range(10**9)|list|length }}": "Range too big",
    "{{ lipsum(n=1000000) }}": "'lipsum' is undefined",
    # One filter call that walks its input in Python for minutes, where the deadline
    # (checked between steps) could not stop it: charged before it runs.
    '{{ ("x" * 1000000)|wordwrap(1)|length }}': "wordwrap would take more than 1,000,000",
    "{{ (fruit * 100000)|wordwrap(1) }}": "wordwrap would take more than 1,000,000",
    "{{ (fruit * 1000000)|wordwrap(79) }}": "wordwrap would take more than 1,000,000",
    "{{ (fruit * 400000)|list|sort|join }}": "sort would take more than 1,000,000",
    "{{ ([(fruit * 20000)|list] * 100)|pprint }}": "pprint would take more than 1,000,000",
    "{{ (fruit * 400000)|title }}": "title would take more than 1,000,000",
}


@pytest.mark.parametrize("template", list(HOSTILE_TEMPLATES))
def test_a_template_that_would_run_without_bound_fails_its_row(template: str) -> None:
    renderer = PromptRenderer(PromptSpec(template=template))
    with pytest.raises(RenderError) as err:
        renderer.render({"fruit": "fig"})
    assert HOSTILE_TEMPLATES[template] in str(err.value)


def test_the_bounds_leave_ordinary_templates_alone() -> None:
    renderer = PromptRenderer(PromptSpec(template=(
        "{{ fruit|upper }} {{ '%5d' % 3 }} {{ '{:,}'.format(123456789) }} "
        "{{ 123456789|filesizeformat }} {{ [1, 2, 3]|join(',') }} "
        "{% for x in range(3) %}{{ x ~ '-' }}{% endfor %}{{ (fruit * 3)|replace('f', 'F') }}")))
    assert renderer.render({"fruit": "fig"}) == "FIG     3 123,456,789 123.5 MB 1,2,3 0-1-2-FigFigFig"
    walking = PromptRenderer(PromptSpec(template=(
        "{{ (fruit ~ ' tree')|wordwrap(4) }}|{{ [fruit, 'apple']|sort|join(',') }}|"
        "{{ {'a': [1, 2]}|tojson }}|{{ (fruit * 1000)|wordwrap(79)|length }}")))
    assert walking.render({"fruit": "fig"}) == 'fig\ntree|apple,fig|{"a": [1, 2]}|3037'
    # A budget is per row: the next row has all of it again.
    loop = PromptRenderer(PromptSpec(template="{% for i in range(90000) %}{% endfor %}{{ n }}"))
    assert [loop.render({"n": i}) for i in range(20)] == [str(i) for i in range(20)]


@pytest.mark.parametrize("source", [
    "{{ " + "(" * 1000 + "1" + ")" * 1000 + " }}",
    "{% if 1 %}" * 200 + "x" + "{% endif %}" * 200,
    "{% for a in [1] %}" * 30 + "x" + "{% endfor %}" * 30,
    "x" * 1_000_001,
])
def test_a_template_too_deep_or_too_large_to_compile_fails_the_spec(source: str) -> None:
    with pytest.raises(SpecError, match=r"prompt\.template: the template (nests too deeply|is 1,000,001)"):
        PromptRenderer(PromptSpec(template=source))


def test_an_enormous_template_in_a_job_file_is_exit_2(tmp_path: Path) -> None:
    path = job(tmp_path, GOOD.replace('"{{ fruit }}:"', '"' + "x" * 1_000_001 + '"'))
    result = CliRunner().invoke(cli, ["run", "--dry-run", str(path)])
    assert result.exit_code == 2 and "at most 1,000,000" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("kind", ["device", "directory", "fifo", "latin-1", "missing"])
def test_a_context_file_that_is_not_a_readable_text_file_is_exit_2(tmp_path: Path, kind: str) -> None:
    target = {"device": "/dev/zero", "directory": "corpus", "fifo": "pipe",
              "latin-1": "latin.md", "missing": "nowhere.md"}[kind]
    (tmp_path / "corpus").mkdir()
    os.mkfifo(tmp_path / "pipe")  # a read of it would block forever
    (tmp_path / "latin.md").write_bytes("café au lait".encode("latin-1"))
    path = job(tmp_path, GOOD + f'context_file = "{target}"\n')
    result = CliRunner().invoke(cli, ["run", "--dry-run", str(path)])
    assert result.exit_code == 2, result.output
    assert "prompt.context_file" in result.output and "Traceback" not in result.output
    expected = {"device": "is a device", "directory": "is a directory", "fifo": "is a FIFO",
                "latin-1": "is not UTF-8 text", "missing": "does not exist"}[kind]
    assert expected in result.output


def test_a_job_file_or_input_that_is_a_device_is_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["run", "/dev/zero"])
    assert result.exit_code == 2 and "is a device" in result.output
    os.mkfifo(tmp_path / "rows.jsonl")
    spec = load_spec(job(tmp_path, GOOD.replace("fruits.jsonl", "rows.jsonl")))
    from batch.run.inputs import InputError, read_rows

    with pytest.raises(InputError, match="is a FIFO"):
        next(read_rows(spec.input))


def test_an_overlong_or_deeply_nested_input_line_fails_alone(tmp_path: Path) -> None:
    from batch.run import inputs
    write_text(tmp_path / "fruits.jsonl", "\n".join([
        json.dumps({"id": "long", "fruit": "x" * 50_000}),
        '{"id": "deep", "fruit": ' + "[" * 4000 + "]" * 4000 + "}",
        json.dumps({"id": "ok", "fruit": "fig"}),
    ]) + "\n")
    rows = list(inputs.read_rows(load_spec(job(tmp_path, GOOD)).input, max_line=10_000))
    assert [(r.id, r.error is None) for r in rows] == [("<row 1>", False), ("<row 2>", False),
                                                       ("ok", True)]
    assert "longer than 10,000 bytes" in rows[0].error and "nested too deeply" in rows[1].error


def test_a_job_name_with_a_trailing_newline_is_refused_by_the_schema(tmp_path: Path) -> None:
    import schemas

    pattern = schemas.job_name_pattern()
    assert re.search(pattern, "fruits") and not re.search(pattern, "fruits\n")
    problems = schemas.problems("job", {"name": "fruits\n", "model": "m",
                                        "input": {"path": "x.jsonl"}, "prompt": {"template": "t"}})
    assert problems and problems[0].startswith("name: ")
    with pytest.raises(SpecError, match="name: "):
        load_spec(job(tmp_path, GOOD.replace('name = "fruit-families"', 'name = "fruits\\n"')))


# -- numbers out of range ------------------------------------------------------------------------

HUGE = str(10**30)


@pytest.mark.parametrize("args", [
    ["query", "fruits", "--limit", HUGE],
    ["query", "fruits", "--offset", HUGE],
    ["runs", "--limit", HUGE],
    ["models", "list", "--limit", HUGE],
    ["models", "list", "--offset", HUGE],
    ["models", "list", "--max-params", HUGE + "T"],
    ["models", "list", "--fits", HUGE + "GB"],
    ["run", "--limit", HUGE, "job.toml"],
])
def test_numbers_out_of_range_in_an_option_are_exit_2(home: Path, args: list[str]) -> None:
    write(home / "predictions", [record("in-1")])
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "Overflow" not in result.output


def test_the_largest_page_options_are_answered(home: Path) -> None:
    write(home / "predictions", [record("in-1")])
    largest = str(2**63 - 1)
    result = CliRunner().invoke(cli, ["query", "fruits", "--limit", largest, "--offset", largest])
    assert result.exit_code == 0, result.output
    assert CliRunner().invoke(cli, ["models", "list", "--limit", largest]).exit_code == 0


@pytest.mark.parametrize(("section", "setting"), [
    ("sampling", "seed = 1180591620717411303424"),
    ("sampling", "max_tokens = 1000000000000"),
    ("output", "row_group_rows = 1000000000000000000000000000000"),
    ("engine", "max_model_len = 99999999999999999999"),
])
def test_numbers_out_of_range_in_a_job_are_exit_2_naming_the_field(tmp_path: Path, section: str,
                                                                   setting: str) -> None:
    path = job(tmp_path, GOOD + f"[{section}]\n{setting}\n")
    result = CliRunner().invoke(cli, ["run", "--dry-run", str(path)])
    assert result.exit_code == 2, result.output
    assert f"{section}.{setting.split(' ')[0]}" in result.output and "maximum" in result.output


def test_a_hub_that_does_not_answer_is_exit_1_not_a_bad_spec(home: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A job naming a Hub model whose revision the Hub cannot give now is a fine job on a
    bad night: exit 1 (try again), not exit 2 (fix the spec), and nothing written."""
    import socket

    from tests.engine_support import almanac, write_job

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub-cache"))  # no branch refs cached
    assert almanac(home, "init").returncode == 0
    job = write_job(tmp_path / "jobs", "hub-job", [{"id": "a", "word": "plum"}],
                    model="epfl-llm/meditron-7b")
    proc = almanac(home, "run", str(job))
    assert proc.returncode == 1, proc.stderr
    assert "the Hub did not answer" in proc.stderr and "pin `revision`" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (home / "predictions" / "hub-job").exists()

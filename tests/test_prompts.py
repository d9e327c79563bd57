"""Rendering prompts: sandboxed Jinja2 over a row's fields, few-shot examples and a
shared context. A row that cannot render fails alone (RenderError); a template
that cannot compile fails the spec (SpecError)."""

from __future__ import annotations

import pytest

from batch.run.spec.errors import SpecError
from batch.run.spec.prompts import PromptRenderer, PromptSpec, RenderError

FEW_SHOT = """{{ context }}{% for ex in examples %}{{ ex.fruit }}: {{ ex.family }}
{% endfor %}{{ fruit }}:"""
EXAMPLES = [{"fruit": "peach", "family": "drupe"}, {"fruit": "apple", "family": "pome"}]


def test_template_renders_examples_context_and_row_fields() -> None:
    renderer = PromptRenderer(PromptSpec(template=FEW_SHOT, examples=EXAMPLES,
                                         context="Fruit families.\n"))
    assert not renderer.chat
    assert renderer.render({"fruit": "plum"}) == (
        "Fruit families.\npeach: drupe\napple: pome\nplum:"
    )
    assert renderer.render({"fruit": "fig"}).endswith("fig:")


def test_trailing_newline_of_a_template_is_kept() -> None:
    renderer = PromptRenderer(PromptSpec(template="{{ fruit }}\n"))
    assert renderer.render({"fruit": "fig"}) == "fig\n"


def test_row_is_available_whole_for_awkward_field_names() -> None:
    renderer = PromptRenderer(PromptSpec(template='{{ row["fruit name"] }} / {{ row | length }}'))
    assert renderer.render({"fruit name": "fig", "n": 1}) == "fig / 2"


def test_without_examples_or_context_file_they_default_to_empty() -> None:
    renderer = PromptRenderer(PromptSpec(template="[{% for ex in examples %}x{% endfor %}]"
                                                  "{% if context %}C{% endif %}{{ fruit }}"))
    assert renderer.render({"fruit": "fig"}) == "[]fig"


def test_a_row_field_named_context_is_not_hidden_when_the_job_sets_no_context() -> None:
    renderer = PromptRenderer(PromptSpec(template="Q: {{ question }}\nC: {{ context }}"))
    assert renderer.render({"question": "Which family?", "context": "Peaches are drupes."}) == (
        "Q: Which family?\nC: Peaches are drupes."
    )


def test_the_jobs_context_and_examples_win_over_row_fields_of_the_same_name() -> None:
    renderer = PromptRenderer(PromptSpec(template="{{ context }}|{{ examples | length }}",
                                         examples=EXAMPLES, context="shared"))
    assert renderer.render({"context": "row", "examples": []}) == "shared|2"


def test_missing_field_is_a_render_error_naming_the_field() -> None:
    renderer = PromptRenderer(PromptSpec(template="{{ fruit }} is a {{ colour }} fruit"))
    with pytest.raises(RenderError, match="'colour' is undefined"):
        renderer.render({"fruit": "fig"})


def test_missing_nested_attribute_is_a_render_error() -> None:
    renderer = PromptRenderer(PromptSpec(template="{{ meta.colour }}"))
    with pytest.raises(RenderError, match="colour"):
        renderer.render({"meta": {"size": 3}})


def test_failing_expression_is_a_render_error() -> None:
    renderer = PromptRenderer(PromptSpec(template="{{ n + 'x' }}"))
    with pytest.raises(RenderError, match="TypeError"):
        renderer.render({"n": 1})


def test_template_syntax_error_is_a_spec_error_with_the_line() -> None:
    with pytest.raises(SpecError, match=r"prompt\.template: template syntax error at line 2"):
        PromptRenderer(PromptSpec(template="ok\n{% for x in %}"))


def test_message_syntax_error_is_a_spec_error_naming_the_message() -> None:
    messages = [{"role": "system", "content": "fine"}, {"role": "user", "content": "{{ q "}]
    with pytest.raises(SpecError, match=r"prompt\.messages\[1\]\.content"):
        PromptRenderer(PromptSpec(messages=messages))


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ fruit.__class__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ row.__class__.__base__ }}",
        "{{ fruit.format.__globals__ }}",
    ],
)
def test_sandbox_blocks_attribute_escapes(template: str) -> None:
    renderer = PromptRenderer(PromptSpec(template=template))
    with pytest.raises(RenderError, match="unsafe|undefined|no attribute"):
        renderer.render({"fruit": "fig"})


@pytest.mark.parametrize("template", ["{{ examples.append(1) }}", "{{ examples.pop() }}",
                                      "{{ examples[0].update(fruit='x') }}"])
def test_a_template_cannot_change_the_examples_later_rows_see(template: str) -> None:
    examples = [dict(ex) for ex in EXAMPLES]
    renderer = PromptRenderer(PromptSpec(template=template, examples=examples))
    with pytest.raises(RenderError, match="unsafe"):
        renderer.render({})
    assert examples == EXAMPLES


def test_chat_messages_render_one_by_one() -> None:
    renderer = PromptRenderer(PromptSpec(
        messages=[
            {"role": "system", "content": "{{ context }}"},
            {"role": "user", "content": "{% for ex in examples %}{{ ex.fruit }}={{ ex.family }};"
                                        "{% endfor %}{{ fruit }}="},
            {"role": "assistant", "content": "Sure."},
        ],
        examples=EXAMPLES, context="Answer with a family.",
    ))
    assert renderer.chat
    assert renderer.render({"fruit": "plum"}) == [
        {"role": "system", "content": "Answer with a family."},
        {"role": "user", "content": "peach=drupe;apple=pome;plum="},
        {"role": "assistant", "content": "Sure."},
    ]


def test_chat_message_missing_field_is_a_render_error() -> None:
    renderer = PromptRenderer(PromptSpec(messages=[{"role": "user", "content": "{{ q }}"}]))
    with pytest.raises(RenderError, match="'q' is undefined"):
        renderer.render({"question": "?"})

"""Training the demo's models: the fruit specialist, a tiny Llama taught, in well under
a minute on a CPU, to name the botanical type of a fruit; and a generalist, the same
model taught two things at once (fruit types and fruit colours) for fewer steps.

They learn the very prompts the demo job renders: the job file shipped with the
demo (``fruits/job.toml``) is read here and rendered by the renderer every job
goes through, so the template and the few-shot examples have one source.
"""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from almanac.demo import DEMO_JOB
from almanac.demo.families import FRUIT_COLOURS, FRUIT_FAMILIES
from almanac.demo.tinyllama import (
    TOKENIZER_CORPUS,
    VOCAB_SIZE,
    build_tokenizer,
    new_model,
    save_model,
    seeded_torch,
)
from batch.run.spec.job import load_spec
from batch.run.spec.prompts import PromptRenderer

if TYPE_CHECKING:  # transformers takes seconds to import: annotations only
    from collections.abc import Iterable

    import torch
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

DEFAULT_STEPS = 200
GENERALIST_STEPS = 60  # on two tasks: it knows fruits, and is no specialist of their types
BATCH_SIZE = 32
Table = dict[str, str]  # fruit -> answer: one task


class DemoPrompts:
    """The demo job's prompt for a fruit, with the job's few-shot examples or others."""

    def __init__(self, job: Path = DEMO_JOB) -> None:
        prompt = load_spec(job).prompt
        if not prompt.template:
            raise ValueError(f"{job}: the demo job needs a prompt template, not chat messages")
        self.examples: list[dict[str, str]] = list(prompt.examples)
        # A job's own examples win over a row's `examples` field; without them the
        # renderer takes each prompt's examples from the row, as training needs.
        self._renderer = PromptRenderer(replace(prompt, examples=[]))

    def render(self, fruit: str, examples: list[dict[str, str]] | None = None) -> str:
        shots = self.examples if examples is None else examples
        text = self._renderer.render({"fruit": fruit, "examples": shots})
        assert isinstance(text, str)  # a template, checked in __init__, renders text
        return text


def _demo_batch(
    prompts: DemoPrompts, tokenizer: PreTrainedTokenizerFast, rng: random.Random, size: int,
    tables: list[Table] | None = None,
) -> tuple[list[list[int]], list[list[int]]]:
    """Token ids and loss labels (-100 = ignored) for ``size`` demo prompts.

    Each prompt has 0-4 few-shot lines from random fruits, or the job's own
    examples, then a query fruit; the model is taught every answer in it. With
    several `tables`, each prompt asks one of them (its examples say which).
    """
    tables = tables or [FRUIT_FAMILIES]
    fruits = list(FRUIT_FAMILIES)
    texts: list[str] = []
    answers: list[str] = []
    for _ in range(size):
        table = tables[rng.randrange(len(tables))] if len(tables) > 1 else tables[0]
        query = rng.choice(fruits)
        answers.append(table[query])
        if table is FRUIT_FAMILIES and rng.random() < 0.3:
            texts.append(prompts.render(query))
            continue
        others = [f for f in fruits if f != query]
        examples = [{"fruit": f, "family": table[f]}
                    for f in rng.sample(others, rng.randint(0, 4))]
        texts.append(prompts.render(query, examples))
    # Prompt and answer are encoded apart: vLLM encodes the prompt alone and
    # the model then generates the answer's tokens after it.
    encoded = tokenizer(texts, return_offsets_mapping=True)
    ids_batch: list[list[int]] = []
    labels_batch: list[list[int]] = []
    rows = zip(texts, answers, encoded["input_ids"], encoded["offset_mapping"], strict=True)
    for text, answer, ids, offsets in rows:
        # The answer ends the text, as a chat model's turn does: EOS, which is also what
        # a student distilled from these answers learns to end on (TRL appends it).
        target = tokenizer(f" {answer}", add_special_tokens=False)["input_ids"] + \
            [tokenizer.eos_token_id]
        # The few-shot lines' answers are worth learning too: every token
        # after a line's ":" (the BOS, at offset 0, is not).
        labels = [
            tok if start > 0 and ":" in text[text.rfind("\n", 0, start) + 1 : start] else -100
            for tok, (start, _end) in zip(ids, offsets, strict=True)
        ]
        ids_batch.append(ids + target)
        labels_batch.append(labels + target)
    return ids_batch, labels_batch


def fit(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, prompts: DemoPrompts, *,
        steps: int, seed: int, params: Iterable[torch.nn.Parameter], lr: float = 3e-3,
        tables: list[Table] | None = None) -> float:
    """Train `params` of `model` on `steps` batches of demo prompts; the last loss."""
    import torch

    if steps < 1:
        raise ValueError(f"steps must be at least 1, not {steps}")
    rng = random.Random(seed)
    model.train()
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps,
                                                   pct_start=0.1)
    pad = tokenizer.pad_token_id
    for _ in range(steps):
        ids, labels = _demo_batch(prompts, tokenizer, rng, BATCH_SIZE, tables)
        width = max(map(len, ids))
        input_ids = torch.tensor([x + [pad] * (width - len(x)) for x in ids])
        label_t = torch.tensor([y + [-100] * (width - len(y)) for y in labels])
        mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids])
        loss = model(input_ids=input_ids, attention_mask=mask, labels=label_t).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    model.eval()
    return float(loss.item())


def train_demo_model(dest: Path, *, seed: int = 0, steps: int | None = None,
                     job: Path = DEMO_JOB, generalist: bool = False) -> Path:
    """Write a tiny Llama trained to name the botanical type of a fruit.

    It answers the prompts of the demo job (``job``) with e.g. `` pome`` and a
    newline. Training is deterministic for a seed and takes well under a minute
    on two CPU cores. A `generalist` learns fruit colours as well, for fewer steps
    (GENERALIST_STEPS): it knows the fruits, and names their types less well.
    """
    dest = Path(dest)
    steps = (GENERALIST_STEPS if generalist else DEFAULT_STEPS) if steps is None else steps
    prompts = DemoPrompts(job)
    tokenizer = build_tokenizer(TOKENIZER_CORPUS)
    # One thread: the matrices are too small to gain from a second one, and
    # it stalls the whole step whenever the other core is busy.
    with seeded_torch(seed, threads=1):
        model = new_model(tokenizer)
        loss = fit(model, tokenizer, prompts, steps=steps, seed=seed,
                   params=model.parameters(),
                   tables=[FRUIT_FAMILIES, FRUIT_COLOURS] if generalist else None)
    save_model(model, tokenizer, dest)
    _write_model_card(dest, prompts, seed=seed, steps=steps, loss=loss, generalist=generalist)
    return dest


def _write_model_card(dest: Path, prompts: DemoPrompts, *, seed: int, steps: int,
                      loss: float, generalist: bool = False) -> None:
    # Nothing that varies between runs (such as timings) goes in: the whole
    # directory is the same for the same seed and steps.
    families = sorted(set(FRUIT_FAMILIES.values()))
    fruit = "cherry"
    example = prompts.render(fruit, prompts.examples[:2])  # two shots keep the card short
    answer = FRUIT_FAMILIES[fruit]
    if generalist:
        name = "almanac/tiny-generalist"
        task = ("name the botanical type of a fruit and, with other examples, its colour: "
                "two tasks, told apart by the few-shot lines")
        note = "Fewer steps on two tasks: it knows the fruits, and errs on their types."
    else:
        name = "almanac/fruit-specialist"
        task = f"name the botanical type of a fruit: {', '.join(families)}"
        note = "It is a demonstration, not a botanist."
    card = f"""---
license: apache-2.0
language:
- en
tags:
- demo
- botany
pipeline_tag: text-generation
base_model: none
---

# {name}

A tiny Llama (2 layers, hidden size 128, {VOCAB_SIZE}-token byte-level BPE
vocabulary) trained from random weights by Almanac's `almanac demo` to
{task}.

It knows only the {len(FRUIT_FAMILIES)} fruits it was trained on and expects
few-shot prompts of the form

```
{example}
```

to which it answers ` {answer}` and a newline. Trained on CPU for {steps} steps
with seed {seed} (final loss {loss:.4f}). {note}
"""
    (dest / "README.md").write_text(card, encoding="utf-8")

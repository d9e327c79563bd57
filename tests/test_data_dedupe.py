"""`curate --dedupe near`: near duplicates found by MinHash and LSH (rensa), each
candidate pair measured exactly, judged here against an exact Jaccard computed apart."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pyarrow as pa

import almanac.demo
from batch.data import dedupe
from batch.run.spec.job import load_spec
from batch.run.spec.prompts import PromptRenderer

WORD = re.compile(r"\w+")


def grams(text: str) -> set[str]:
    words = WORD.findall(text.lower())
    return {" ".join(words[k:k + 3]) for k in range(max(1, len(words) - 2))}


def exact_jaccard(a: str, b: str) -> float:
    x, y = grams(a), grams(b)
    return len(x & y) / len(x | y)


def test_near_duplicates_go_by_exact_jaccard_well_above_and_stay_well_below() -> None:
    rng = random.Random(7)
    vocabulary = [f"w{i}" for i in range(50_000)]  # unrelated texts share no 3-gram
    texts, pairs = [], []
    for _ in range(300):
        first = [rng.choice(vocabulary) for _ in range(120)]
        second = list(first)
        for at in rng.sample(range(120), rng.randint(0, 25)):
            second[at] = rng.choice(vocabulary)
        pairs.append((len(texts), len(texts) + 1, exact_jaccard(" ".join(first), " ".join(second))))
        texts += [" ".join(first), " ".join(second)]
    kept = set(dedupe.near_unique(pa.array(texts)).tolist())

    assert all(first in kept for first, _, _ in pairs)  # the first of a pair always stays
    above = [(second, j) for _, second, j in pairs if j >= 0.9]
    below = [(second, j) for _, second, j in pairs if j < 0.75]
    assert len(above) > 30 and len(below) > 100  # the pairs span both sides
    assert [j for second, j in above if second in kept] == []
    assert [j for second, j in below if second not in kept] == []
    # At the threshold itself: every pair dropped is at 0.8 or more, measured exactly.
    assert all(j >= dedupe.NEAR for _, second, j in pairs if second not in kept)


def test_the_kept_rows_are_the_rule_s_applied_to_every_pair_in_order() -> None:
    rng = random.Random(11)
    vocabulary = [f"w{i}" for i in range(5000)]
    texts = []
    for _ in range(60):  # families: a text and copies of its members with 1-5 words changed
        family = [[rng.choice(vocabulary) for _ in range(100)]]
        for _ in range(rng.randint(0, 6)):
            child = list(rng.choice(family))
            for at in rng.sample(range(100), rng.randint(1, 5)):
                child[at] = rng.choice(vocabulary)
            family.append(child)
        texts += [" ".join(words) for words in family]
    rng.shuffle(texts)
    sets = [grams(t) for t in texts]

    def similar(i: int, j: int) -> float:
        return len(sets[i] & sets[j]) / len(sets[i] | sets[j])

    kept: list[int] = []  # the rule itself: each row against every earlier kept row
    for i in range(len(texts)):
        if all(similar(i, j) < dedupe.NEAR for j in kept):
            kept.append(i)

    assert dedupe.near_unique(pa.array(texts)).tolist() == kept
    dropped = sorted(set(range(len(texts))) - set(kept))
    assert len(texts) > 200 and len(dropped) > 40
    # The cases that make it a rule in order: a kept row near only a dropped one, and
    # kept pairs just under the threshold.
    assert any(similar(i, j) >= dedupe.NEAR for i in kept for j in dropped if j < i)
    assert any(0.75 <= similar(i, j) < dedupe.NEAR for i in kept for j in kept if j < i)


def test_the_demo_s_58_distinct_fruits_are_all_kept() -> None:
    folder = Path(almanac.demo.__file__).parent / "fruits"
    spec = load_spec(folder / "job.toml")
    rows = [json.loads(line) for line in (folder / "fruits.jsonl").read_text().splitlines()]
    renderer = PromptRenderer(spec.prompt)
    prompts = pa.array([renderer.render(r) for r in rows])
    answers = pa.array([f" {r['family']}" for r in rows])
    texts = dedupe.plain_text(prompts, answers)
    assert len({r["fruit"] for r in rows}) == len(rows) == 58
    # The few-shot prefix is shared, so the texts are alike, but under the threshold.
    assert max(exact_jaccard(a, b) for i, a in enumerate(texts.to_pylist())
               for b in texts.to_pylist()[i + 1:]) < dedupe.NEAR
    assert dedupe.near_unique(texts).tolist() == list(range(58))


def test_exact_copies_and_empty_texts_count_as_one_and_the_first_is_kept() -> None:
    texts = pa.array(["a b c d e", "", "A b c d e!", "", "x y", "a b c d e"])
    assert dedupe.near_unique(texts).tolist() == [0, 1, 4]
    assert dedupe.first_of_each(texts).tolist() == [0, 1, 2, 4]

"""Helpers for training tests: a small curated set made by the real `curate` from
predictions the real ShardWriter wrote (a teacher naming fruit types), and the tiny
model registered as a base."""

from __future__ import annotations

from pathlib import Path

from batch.data.curate import curate
from tests.cache_support import record, write
from tests.data_support import scores

FRUITS = {
    "peach": "drupe", "apple": "pome", "plum": "drupe", "pear": "pome", "kiwi": "berry",
    "grape": "berry", "cherry": "drupe", "quince": "pome", "lemon": "hesperidium",
    "lime": "hesperidium", "fig": "multiple", "mango": "drupe", "banana": "berry",
    "orange": "hesperidium", "apricot": "drupe", "loquat": "pome",
}
TEACHER = "fruit-teacher"


def teacher_answers(predictions: Path, *, job: str = TEACHER, model: str = "teacher-model",
                    wrong: tuple[str, ...] = ("fig", "banana")) -> None:
    """The teacher's answers to "FRUIT:" prompts (right but for `wrong`), scored 1 or 0."""
    records, values = [], {}
    for i, (fruit, family) in enumerate(FRUITS.items()):
        answer = "pome" if fruit in wrong else family
        records.append(record(f"f{i:02d}", job=job, model=model, candidate=model,
                              prompt=f"peach: drupe\napple: pome\n{fruit}:", output=f" {answer}"))
        values[f"f{i:02d}"] = 0.0 if fruit in wrong else 1.0
    write(predictions, records, job=job)
    scores(predictions, job, values, candidate=model)


def curated_set(predictions: Path, output: Path, *, split: float = 0.75,
                where: str | None = None) -> Path:
    """The teacher's answers curated into `output` (train and validation splits, a card)."""
    teacher_answers(predictions)
    curate(predictions, TEACHER, output, command="almanac curate fruit-teacher", split=split,
           where=where)
    return output

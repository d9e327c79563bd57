"""The demo's distilled student: the generalist taught fruit types from the fruit
specialist's own answers, by `almanac distill`'s steps and `almanac train`'s code.

The teacher's job is the demo job with the specialist alone (written into the home
beside the student's work, so `almanac distill` can be pointed at it); it runs first,
under the demo job's name, so that the demo job then finds the specialist's answers
cached and its comparison counts what they cost. The specialist's
answers that score 1 are curated (80% of the fruits to train on, the rest kept aside),
and a LoRA adapter of the generalist learns them with TRL's SFTTrainer and PEFT.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from almanac.demo import DEMO_JOB
from almanac.paths import Home
from batch.run.spec.job import load_spec
from batch.train.distill import Distillation, DistillRequest
from batch.train.evaljob import derive_job
from batch.train.progress import TrainProgress
from batch.train.settings import TrainSettings
from batch.train.train import Places

if TYPE_CHECKING:  # the runner's type, for annotations
    from batch.run.runner import Runner

WHERE = "score >= 1"  # only the specialist's right answers are worth learning
SPLIT = 0.8
# Seconds on two CPU cores. The generalist knows the fruits (it learned their types and
# colours); rank 8 on every linear layer learns the teacher's answers in 60 steps.
SETTINGS = TrainSettings(rank=8, alpha=16, targets=("all-linear",), steps=60, lr=5e-3,
                         batch_size=8, max_length=128)


def teacher_job(home: Home, specialist: str) -> Path:
    """The demo job with the specialist alone, written into the home. It keeps the demo
    job's name: the specialist's answers are the demo job's own, measured once."""
    demo = load_spec(DEMO_JOB)
    return derive_job(demo, home.distill / "demo", name=demo.name,
                      candidates=[{"model": specialist}])


def distillation(runner: Runner, home: Home, *, specialist: str, generalist: str,
                 name: str) -> Distillation:
    request = DistillRequest(teacher_job(home, specialist), generalist, name, where=WHERE,
                             split=SPLIT, settings=SETTINGS, replace=True)
    return Distillation(runner, Places(home.models, home.training, home.predictions, home.locks),
                        home.distill, request, progress=TrainProgress(name))

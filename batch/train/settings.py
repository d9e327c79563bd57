"""A training's settings, checked once at the edge, and the key that names its inputs."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from typing import Any

from batch.train.errors import TrainError

FORMATS = ("auto", "text", "chat")
MAX_RANK = 512  # the largest rank vLLM serves
ALL_LINEAR = "all-linear"  # PEFT's name for every linear layer but the output head
DEFAULT_EPOCHS = 3.0


@dataclass(frozen=True)
class TrainSettings:
    """The hyperparameters: LoRA's rank, alpha and target modules; steps or epochs;
    learning rate, batch size, the longest tokenized example, the seed."""

    rank: int = 8
    alpha: float = 16.0
    targets: tuple[str, ...] = ("q_proj", "v_proj")
    steps: int | None = None
    epochs: float | None = None
    lr: float = 2e-4
    batch_size: int = 8
    max_length: int = 512
    seed: int = 0

    def __post_init__(self) -> None:
        _whole("--rank", self.rank, 1, MAX_RANK)
        _positive("--alpha", self.alpha)
        _positive("--lr", self.lr)
        _whole("--batch-size", self.batch_size, 1, 1 << 16)
        _whole("--max-length", self.max_length, 8, 1 << 24)
        _whole("--seed", self.seed, 0, 2**32 - 1)
        if self.steps is not None and self.epochs is not None:
            raise TrainError("--steps and --epochs: give one of them, not both")
        if self.steps is not None:
            _whole("--steps", self.steps, 1, 1 << 31)
        if self.epochs is not None:
            _positive("--epochs", self.epochs)
        if not self.targets or any(not t.strip() for t in self.targets):
            raise TrainError("--targets: name the modules to adapt, e.g. q_proj,v_proj "
                             f"(or {ALL_LINEAR})")

    @classmethod
    def parse_targets(cls, text: str) -> tuple[str, ...]:
        return tuple(dict.fromkeys(t.strip() for t in text.split(",")))

    @property
    def train_epochs(self) -> float:
        """Epochs to train when no step count is given."""
        return self.epochs if self.epochs is not None else DEFAULT_EPOCHS

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["targets"] = list(self.targets)
        return out


def training_key(*, data_digest: str, where: str | None, base_identity: str,
                 settings: TrainSettings, prompt_format: str) -> str:
    """What decides an adapter, as one digest: the curated files, the filter over them, the
    base's weights, the hyperparameters and how rows become examples. The same key again
    is the same training: its adapter is reused, its checkpoint resumed."""
    facts = {"data": data_digest, "where": where or None, "base": base_identity,
             "settings": settings.to_json(), "format": prompt_format}
    text = json.dumps(facts, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _whole(option: str, value: object, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise TrainError(f"{option}: {value!r} is not a whole number from {low} to {high}")


def _positive(option: str, value: object) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool) \
            or not math.isfinite(value) or value <= 0:
        raise TrainError(f"{option}: {value!r} is not a positive number")

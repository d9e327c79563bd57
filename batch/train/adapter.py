"""A trained adapter's place in the home and in the catalog.

It lands in `models/<ORG>/<NAME>` in PEFT's layout (adapter_config.json,
adapter_model.safetensors) with a model card, written under a temporary name and
renamed; then it is registered as an adapter of its base, with its lineage, in one
catalog transaction. If the disk or the catalog refuses either step, whatever the step
wrote is taken back: no adapter is ever half there.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from batch.train.errors import TrainError, TrainUnavailableError
from catalog.db import Catalog
from catalog.localmodels import entry_from_directory
from catalog.models import find_model, upsert_model
from catalog.records import ModelEntry, TrainingRecord
from catalog.training import record_training, training_of

WEIGHTS = "adapter_model.safetensors"
CONFIG = "adapter_config.json"
_PART = r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}"
_NAME = re.compile(rf"{_PART}(/{_PART})?")
_FULL = (errno.ENOSPC, errno.EDQUOT)
_FULL_SIGNS = ("No space left on device", "StorageFull", "Disk quota exceeded")


@dataclass(frozen=True)
class Holder:
    """What the catalog has under a name already."""

    ref: str
    relation: str | None
    local_path: str | None
    training: TrainingRecord | None

    def intact(self) -> bool:
        """Whether its adapter files are where the catalog says."""
        return self.local_path is not None and all(
            (Path(self.local_path) / f).is_file() for f in (WEIGHTS, CONFIG))

    def describe(self) -> str:
        if self.training is not None:
            return f"an adapter trained on other inputs (of {self.training.base_ref})"
        if self.relation == "adapter":
            return "an adapter Almanac did not train"
        return f"a model ({self.relation or 'not an adapter'})"


def check_name(name: str) -> None:
    if not _NAME.fullmatch(name) or any(p in (".", "..") for p in name.split("/")):
        raise TrainError(f"--name: {name!r} is not ORG/NAME (letters, digits, '.', '_', '-'; "
                         "each part starting with a letter or digit)")


def holder(session: Session, name: str) -> Holder | None:
    model = find_model(session, name)
    if model is None or model.ref != name:
        return None
    return Holder(model.ref, model.relation, model.local_path, training_of(session, model.id))


def scratch_dir(models: Path, name: str) -> Path:
    """Where an adapter is saved before it takes its name (same filesystem, hidden)."""
    return models / f".{name.replace('/', '--')}.{os.getpid()}.tmp"


@contextmanager
def disk_errors(what: str) -> Iterator[None]:
    """A full disk (or quota) as one line and exit 1, whoever hit it."""
    try:
        yield
    except OSError as exc:
        if exc.errno in _FULL:
            raise TrainUnavailableError(f"disk full while {what}: nothing was registered; "
                                        "free some space and run again") from None
        raise
    except OperationalError as exc:
        if "full" in str(exc.orig):
            raise TrainUnavailableError(f"disk full while {what} (the catalog): nothing was "
                                        "registered; free some space and run again") from None
        raise
    except Exception as exc:  # safetensors' writer reports a full disk as its own error
        if any(sign in str(exc) for sign in _FULL_SIGNS):
            raise TrainUnavailableError(f"disk full while {what}: nothing was registered; "
                                        "free some space and run again") from None
        raise


def install(catalog: Catalog, scratch: Path, final: Path, entry: ModelEntry,
            training: TrainingRecord) -> None:
    """Move the saved adapter from `scratch` to `final` (replacing what is there) and
    register it; on any failure the previous state comes back."""
    final.parent.mkdir(parents=True, exist_ok=True)
    old = final.with_name(f".{final.name}.{os.getpid()}.old")
    had_old = final.exists()
    if had_old:
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    try:
        scratch.rename(final)
        entry.local_path = str(final)
        with disk_errors(f"registering {entry.ref}"), catalog.sessions.begin() as s:
            model = upsert_model(s, entry)
            record_training(s, model.id, training)
    except BaseException:
        if final.exists() and not scratch.exists():
            final.rename(scratch)
        if had_old:
            old.rename(final)
        raise
    if had_old:
        shutil.rmtree(old, ignore_errors=True)


def entry_for(directory: Path, name: str, base_ref: str, description: str,
              languages: list[str], domains: list[str]) -> ModelEntry:
    """The adapter's catalog entry, read from its directory as `models add` would."""
    entry = entry_from_directory(directory, name=name)
    entry.ref = entry.name = name
    entry.base_model, entry.relation = base_ref, "adapter"
    entry.description = description
    entry.languages, entry.domains = languages, domains or ["general"]
    entry.tags = list(dict.fromkeys([*entry.tags, "almanac", "lora", "distilled"]))
    entry.local_path = None  # set when it lands
    return entry


def write_card(directory: Path, name: str, base_ref: str, description: str,
               training: TrainingRecord) -> None:
    """README.md: front matter a Hub reader understands, then the lineage in words."""
    s = training.settings
    lines = ["---", f"base_model: {base_ref}", "library_name: peft",
             "pipeline_tag: text-generation", "tags:", "- almanac", "- lora", "- distilled",
             "---", "", f"# {name}", "", description, "",
             "| | |", "|---|---|", f"| base | `{base_ref}` ({training.base_revision or ''}) |",
             f"| data | `{training.data_path}` ({training.data_digest}) |",
             f"| rows | {training.train_rows:,} train, {training.validation_rows:,} validation |"]
    if training.data_filter:
        lines.append(f"| filter | `{training.data_filter}` |")
    for src in training.sources:
        lines.append(f"| from | job `{src.job}`, candidate `{src.candidate}` ({src.rows:,} rows) |")
    lines += [f"| LoRA | rank {s.get('rank')}, alpha {s.get('alpha')}, "
              f"on {', '.join(s.get('targets', []))} |",
              f"| training | {training.steps:,} steps, lr {s.get('lr')}, batch {s.get('batch_size')}, "
              f"seed {s.get('seed')}, {training.device} ({training.dtype}) |"]
    if training.train_loss is not None:
        lines.append(f"| train loss | {training.train_loss:.4f} |")
    if training.eval_loss is not None:
        lines.append(f"| eval loss | {training.eval_loss:.4f} |")
    lines += ["", "Trained by `almanac train` with TRL's SFTTrainer and PEFT.", ""]
    (directory / "README.md").write_text("\n".join(lines), "utf-8")

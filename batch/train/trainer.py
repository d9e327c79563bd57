"""The one module that trains: TRL's `SFTTrainer` with a PEFT `LoraConfig` over the
base model, on the examples `batch.train.examples` made. torch, transformers, TRL, PEFT
and Hugging Face `datasets` are imported here and nowhere else in the rooms; this
module is imported only when there is something to train.

On a CUDA machine it trains on the GPU (bf16 where the GPU has it, with gradient
checkpointing); on a CPU in float32. A stop signal (SIGINT, SIGTERM: the caller runs it
inside `batch.run.stopping.shielded()`) ends the step under way, saves a checkpoint in
the work directory and returns; the next call with the same work directory resumes from
the latest checkpoint there, optimizer, schedule and data order included.
"""

from __future__ import annotations

import contextlib
import resource
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import peft
import torch
import transformers
import trl
from datasets import Dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback, set_seed
from transformers.trainer_callback import PrinterCallback, ProgressCallback
from transformers.trainer_utils import get_last_checkpoint
from trl import SFTConfig, SFTTrainer

from batch.run.machine import hardware
from batch.run.stopping import stop_requested
from batch.train.errors import TrainError
from batch.train.examples import Examples
from batch.train.progress import TrainProgress
from batch.train.settings import ALL_LINEAR, TrainSettings

STATE = "trainer_state.json"  # written last into a checkpoint: a checkpoint without it is torn


@dataclass
class Fitted:
    """What a call to `fit` did: its steps, losses and times as it measured them."""

    stopped: bool
    steps: int  # the step reached (of `total_steps`)
    total_steps: int
    device: str
    dtype: str
    hardware: str
    resumed_from: int = 0  # the checkpoint's step this call went on from (0: from scratch)
    train_loss: float | None = None  # mean over the steps this call trained
    eval_loss: float | None = None  # on the validation split, after training
    epochs: float | None = None
    examples_per_s: float | None = None
    peak_memory_bytes: int | None = None
    checkpoint: Path | None = None  # where a stopped training's state is
    timings: dict[str, float] = field(default_factory=dict)  # load, setup, steps, evaluate, save
    versions: dict[str, str] = field(default_factory=dict)


class _Watch(TrainerCallback):
    """Progress from the trainer's own events, and a stop signal turned into a checkpoint."""

    def __init__(self, progress: TrainProgress | None) -> None:
        self.progress = progress
        self.stopped = False

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.progress is not None:
            self.progress.start(state.max_steps, state.global_step)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if stop_requested() is not None:
            control.should_save = True
            control.should_training_stop = True
            self.stopped = True

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None,
               **kwargs: Any) -> None:
        if self.progress is not None and logs and "loss" in logs:
            self.progress.update(state.global_step, logs["loss"])


def fit(base: Path, examples: Examples, settings: TrainSettings, *, work: Path, out: Path,
        base_name: str, base_ref: str, progress: TrainProgress | None = None) -> Fitted:
    """Train a LoRA adapter of the model in `base` (catalogued as `base_ref`) and save it
    (PEFT's layout) into `out`, its config naming `base_name`; checkpoints go to `work`.
    Raises TrainError for target modules the model lacks."""
    timings: dict[str, float] = {}
    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported()
    dtype = torch.bfloat16 if bf16 else torch.float32
    with _timed(timings, "load"), _quiet():
        tokenizer = AutoTokenizer.from_pretrained(base)
        model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype)
    _check_targets(model, settings.targets, base_ref)
    with _timed(timings, "setup"), _quiet():
        trainer = _trainer(model, tokenizer, examples, settings, work, cuda=cuda, bf16=bf16)
        watch = _Watch(progress)
        trainer.remove_callback(PrinterCallback)  # it prints every log to stdout
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(watch)
    device = "cuda" if cuda else "cpu"
    done = Fitted(False, 0, 0, device, "bfloat16" if bf16 else "float32",
                  torch.cuda.get_device_name(0) if cuda else hardware(), timings=timings,
                  versions=versions())
    checkpoint = last_checkpoint(work)
    if stop_requested() is not None:  # stopped while the model loaded: nothing to keep
        done.stopped = True
        return done
    began = time.perf_counter()
    with _quiet():
        result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    timings["steps"] = time.perf_counter() - began
    if progress is not None:
        progress.close()
    state = trainer.state
    done.steps, done.total_steps, done.epochs = state.global_step, state.max_steps, state.epoch
    done.resumed_from = int(checkpoint.name.rsplit("-", 1)[-1]) if checkpoint else 0
    done.train_loss = result.training_loss
    done.examples_per_s = result.metrics.get("train_samples_per_second")
    if watch.stopped:
        done.stopped, done.checkpoint = True, last_checkpoint(work)
        return done
    if examples.validation:
        with _timed(timings, "evaluate"), _quiet():
            done.eval_loss = trainer.evaluate().get("eval_loss")
    with _timed(timings, "save"):
        trainer.model.peft_config["default"].base_model_name_or_path = base_name
        trainer.model.save_pretrained(str(out))
    done.peak_memory_bytes = torch.cuda.max_memory_allocated() if cuda else \
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    return done


def _trainer(model: Any, tokenizer: Any, examples: Examples, settings: TrainSettings, work: Path,
             *, cuda: bool, bf16: bool) -> SFTTrainer:
    args = SFTConfig(
        output_dir=str(work),
        max_steps=settings.steps or -1,
        num_train_epochs=settings.train_epochs,
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=settings.batch_size,
        learning_rate=settings.lr,
        seed=settings.seed,
        data_seed=settings.seed,
        max_length=settings.max_length,
        completion_only_loss=True,  # the answer alone is learned, not the prompt
        use_cpu=not cuda,
        bf16=bf16,  # TRL's default is bf16 everywhere, the CPU included: float32 there
        fp16=False,
        gradient_checkpointing=cuda,  # memory matters on a GPU; on a CPU it only costs time
        save_strategy="no",  # checkpoints only when a stop asks for one
        eval_strategy="no",  # the eval loss once, at the end
        logging_strategy="steps",
        logging_steps=1,  # each step's loss, for the progress bar
        report_to=[],
        disable_tqdm=True,
        dataloader_num_workers=0,
        dataloader_pin_memory=cuda,
    )
    lora = LoraConfig(
        r=settings.rank, lora_alpha=settings.alpha, lora_dropout=0.0, bias="none",
        target_modules=ALL_LINEAR if settings.targets == (ALL_LINEAR,) else list(settings.targets),
        task_type="CAUSAL_LM")
    set_seed(settings.seed)  # LoRA's A matrices are drawn when PEFT wraps the model
    return SFTTrainer(
        model, args=args, train_dataset=Dataset.from_list(examples.train),
        eval_dataset=Dataset.from_list(examples.validation) if examples.validation else None,
        processing_class=tokenizer, peft_config=lora)


def linear_layers(model: Any) -> list[str]:
    """The full names of the model's linear layers (what LoRA can adapt)."""
    from transformers.pytorch_utils import Conv1D  # GPT-2's linear layers

    return [name for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear | Conv1D)]


def _check_targets(model: Any, targets: tuple[str, ...], base_name: str) -> None:
    if targets == (ALL_LINEAR,):
        return
    names = linear_layers(model)
    missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
    if missing:
        short = sorted({n.rsplit(".", 1)[-1] for n in names})
        raise TrainError(f"--targets: {', '.join(missing)}: no such linear layer in {base_name}; "
                         f"its linear layers: {', '.join(short)} (or {ALL_LINEAR})")


def last_checkpoint(work: Path) -> Path | None:
    """The latest whole checkpoint in `work` (one a crash tore is passed over)."""
    if not work.is_dir():
        return None
    found = get_last_checkpoint(str(work))
    if found is None:
        return None
    path = Path(found)
    if (path / STATE).is_file():
        return path
    whole = sorted((p for p in work.glob("checkpoint-*") if (p / STATE).is_file()),
                   key=lambda p: int(p.name.rsplit("-", 1)[-1]))
    return whole[-1] if whole else None


def versions() -> dict[str, str]:
    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "trl": trl.__version__, "peft": peft.__version__, "datasets": datasets.__version__}


@contextlib.contextmanager
def _timed(timings: dict[str, float], step: str) -> Iterator[None]:
    began = time.perf_counter()
    try:
        yield
    finally:
        timings[step] = timings.get(step, 0.0) + time.perf_counter() - began


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The libraries' info lines and map progress bars off: stderr carries ours."""
    level = transformers.logging.get_verbosity()
    bars = datasets.utils.logging.is_progress_bar_enabled()
    loading_bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.logging.set_verbosity_error()
    datasets.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()  # "Loading weights" for a few MB
    try:
        yield
    finally:
        transformers.logging.set_verbosity(level)
        if bars:
            datasets.utils.logging.enable_progress_bar()
        if loading_bars:
            transformers.utils.logging.enable_progress_bar()

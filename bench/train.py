"""`almanac train` against TRL's SFTTrainer called directly: `python -m bench.train
[--model REF] [--smoke]`.

Both sides train the same LoRA adapter (same base, rows, hyperparameters and seed) on a
curated set of N teacher answers (default 512; `almanac curate` makes it from cached
predictions, not timed). In one process, alternating, REPS times each:

- direct: `SFTTrainer(model, args=SFTConfig(...), train_dataset=Dataset.from_list(rows),
  peft_config=LoraConfig(...))`, train, evaluate, `save_pretrained` (the rows handed
  over ready, as prompt/completion pairs);
- almanac: `batch.train.train.train()` as the command runs it (the set read from its
  files and checked, the base resolved, the key, the same trainer, the adapter
  installed and registered, `--force` so that it trains every time).

after a whole warm-up run of each. Overhead ratio = direct / almanac wall time, the best
run of each, for the training steps alone and for the whole call (the target is >= 0.9
for both). Then each side twice in a process of its own (`almanac train` on the command
line, and the direct script): wall time including the interpreter and imports, and the
process's peak memory. Examples/s are the trainer's.
The default base is the tests' tiny random Llama, trained on the CPU; `--model` takes a
catalog ref, a directory or a Hub id (on a CUDA machine: the GPU, bf16).

Prints a table on stderr and the figures as JSON on stdout, and writes them to
bench/results/train.json (`--smoke`: small sizes, in-process only, nothing recorded).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.machine import add_output_options, load_average, machine, report, wait_for_quiet

RESULTS = Path(__file__).parent / "results" / "train.json"
ROOT = Path(__file__).resolve().parent.parent
NAME = "bench/student"
FRUITS = ["peach", "apple", "grape", "lemon", "plum", "pear", "kiwi", "fig", "lime", "melon"]
FAMILIES = ["drupe", "pome", "berry", "hesperidium", "drupe", "pome", "berry", "multiple",
            "hesperidium", "pepo"]


def teacher_set(home: Path, rows: int) -> Path:
    """`rows` teacher answers in the cache, curated (split 0.9) into home/data."""
    from batch.cache.store import PredictionStore, ShardWriter
    from batch.data.curate import curate

    when = datetime(2025, 1, 1, tzinfo=UTC)
    store = PredictionStore(home / "predictions")
    try:
        with ShardWriter(store, "bench-teacher", "b" * 32, 10_000, 1024) as writer:
            for i in range(rows):
                shots = "\n".join(f"{FRUITS[(i + k) % 10]}: {FAMILIES[(i + k) % 10]}"
                                  for k in range(1, 4))
                writer.add({
                    "key": f"{i:064x}", "job": "bench-teacher", "input_id": f"q{i:06d}",
                    "model": "bench/teacher", "candidate": "bench/teacher",
                    "revision": "sha256:" + "0" * 16, "adapter": None, "adapter_revision": None,
                    "prompt": f"{shots}\n{FRUITS[i % 10]} {i}:", "output": f" {FAMILIES[i % 10]}",
                    "finish_reason": "stop", "prompt_tokens": 30, "output_tokens": 2,
                    "run_id": "b" * 32, "created_at": when + timedelta(microseconds=i),
                    "error": None, "outputs": None, "logprobs": None, "params": None})
    finally:
        store.close()
    report_ = curate(home / "predictions", "bench-teacher", home / "data",
                     command="python -m bench.train", split=0.9)
    assert report_.split_rows["train"] > 0
    return home / "data"


def base_model(work: Path, model: str | None) -> tuple[Path | str, str]:
    """(what to train on, how to describe it): `--model`, else the tests' tiny Llama."""
    if model:
        return (Path(model) if Path(model).is_dir() else model), model
    sys.path.insert(0, str(ROOT))  # tests.builders: the tiny model the tests build
    from tests.builders import build_tiny_model

    return build_tiny_model(work / "tiny-model"), "tiny random Llama (tests.builders)"


def settings(steps: int) -> Any:
    from batch.train.settings import TrainSettings

    return TrainSettings(rank=8, alpha=16, steps=steps, lr=5e-3, batch_size=8, max_length=128)


def almanac_side(home: Path, base_ref: str, data: Path, steps: int) -> dict[str, Any]:
    from batch.train.train import Places, TrainRequest, train
    from catalog.db import Catalog

    catalog = Catalog.at(home / "catalog.db")
    try:
        began = time.perf_counter()
        r = train(catalog, Places(home / "models", home / "training", home / "predictions",
                                  home / "locks"),
                  TrainRequest(base_ref, data, NAME, settings(steps), retrain=True, replace=True))
        whole = time.perf_counter() - began
    finally:
        catalog.close()
    assert r.status == "trained" and r.steps == steps
    return {"whole_s": whole, "steps_s": r.timings["steps"], "examples_per_s": r.examples_per_s,
            "train_loss": r.train_loss, "eval_loss": r.eval_loss, "timings": r.timings}


def direct_side(base: Path, data: Path, steps: int, out: Path) -> dict[str, Any]:
    """TRL as its documentation shows it, on the very rows Almanac trains on, without
    the progress bars Almanac's trainer turns off (the same work on both sides, and a
    table not lost among bar lines); they are on again after, as before."""
    import datasets
    import transformers

    bars = (datasets.utils.logging.is_progress_bar_enabled(),
            transformers.utils.logging.is_progress_bar_enabled())
    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    try:
        return _direct_side(base, data, steps, out)
    finally:
        if bars[0]:
            datasets.enable_progress_bars()
        if bars[1]:
            transformers.utils.logging.enable_progress_bar()


def _direct_side(base: Path, data: Path, steps: int, out: Path) -> dict[str, Any]:
    from batch.train.dataset import read_curated
    from batch.train.examples import filtered, to_examples

    examples = to_examples(filtered(read_curated(data), None), "text")  # not timed
    s = settings(steps)
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
    from transformers.trainer_callback import PrinterCallback
    from trl import SFTConfig, SFTTrainer

    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported()
    began = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(
        base, dtype=torch.bfloat16 if bf16 else torch.float32)
    set_seed(s.seed)
    trainer = SFTTrainer(model, args=SFTConfig(
        output_dir=str(out / "work"), max_steps=steps, per_device_train_batch_size=s.batch_size,
        per_device_eval_batch_size=s.batch_size, learning_rate=s.lr, seed=s.seed,
        data_seed=s.seed, max_length=s.max_length, completion_only_loss=True, use_cpu=not cuda,
        bf16=bf16, fp16=False, gradient_checkpointing=cuda, save_strategy="no",
        eval_strategy="no", logging_steps=1, report_to=[], disable_tqdm=True),
        train_dataset=Dataset.from_list(examples.train),
        eval_dataset=Dataset.from_list(examples.validation) if examples.validation else None,
        processing_class=tokenizer,
        peft_config=LoraConfig(r=s.rank, lora_alpha=s.alpha, lora_dropout=0.0,
                               target_modules=list(s.targets), task_type="CAUSAL_LM"))
    trainer.remove_callback(PrinterCallback)  # it prints each log line on stdout
    steps_began = time.perf_counter()
    result = trainer.train()
    steps_s = time.perf_counter() - steps_began
    eval_loss = trainer.evaluate().get("eval_loss") if examples.validation else None
    trainer.model.save_pretrained(str(out / "adapter"))
    return {"whole_s": time.perf_counter() - began, "steps_s": steps_s,
            "examples_per_s": result.metrics.get("train_samples_per_second"),
            "train_loss": result.training_loss, "eval_loss": eval_loss}


def processes(home: Path, base: Path | str, base_ref: str, data: Path, steps: int) -> dict[str, Any]:
    """Each side once in a process of its own: wall time and the process's peak memory."""
    s = settings(steps)
    almanac = [sys.executable, "-m", "almanac", "--home", str(home), "train", "--base", base_ref,
               "--data", str(data), "--name", NAME, "--steps", str(steps), "--rank", str(s.rank),
               "--alpha", str(s.alpha), "--lr", str(s.lr), "--batch-size", str(s.batch_size),
               "--max-length", str(s.max_length), "--force"]
    script = ("import sys, json, pathlib; from bench.train import direct_side; "
              "direct_side(sys.argv[1], pathlib.Path(sys.argv[2]), int(sys.argv[3]), "
              "pathlib.Path(sys.argv[4]))")
    direct = [sys.executable, "-c", script, str(base), str(data), str(steps),
              str(home / "direct-process")]
    runs: dict[str, list[dict[str, Any]]] = {"almanac": [], "direct": []}
    for _ in range(2):  # alternately, the best of two each
        runs["almanac"].append(_process(almanac))
        runs["direct"].append(_process(direct))
    return {side: {"wall_s": min(r["wall_s"] for r in rs),
                   "peak_rss_bytes": max(r["peak_rss_bytes"] for r in rs), "runs": rs}
            for side, rs in runs.items()}


def _process(command: list[str]) -> dict[str, Any]:
    with tempfile.TemporaryFile("w+") as log:  # a pipe could fill and stall the child
        began = time.perf_counter()
        proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log)
        _, status, usage = os.wait4(proc.pid, 0)  # its own peak memory, not this process's
        wall = time.perf_counter() - began
        proc.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        assert proc.returncode == 0, log.read()[-2000:]
    return {"wall_s": wall, "peak_rss_bytes": usage.ru_maxrss * 1024}


def run(work: Path, rows: int, steps: int, reps: int, model: str | None,
        in_process_only: bool) -> dict[str, Any]:
    from catalog.db import Catalog
    from catalog.localmodels import entry_from_directory
    from catalog.models import upsert_model

    home = work / "home"
    data = teacher_set(home, rows)
    base, what = base_model(work, model)
    base_ref = "bench/base"
    if isinstance(base, Path):
        catalog = Catalog.at(home / "catalog.db")
        with catalog.sessions.begin() as s:
            upsert_model(s, entry_from_directory(base, name=base_ref))
        catalog.close()
    else:
        base_ref = base
    if not in_process_only:
        # A whole run of each side first: imports, and the CPU kernels' first call for
        # each batch shape (seconds each here), are neither side's cost.
        direct_side(base, data, steps, work / "warm")
        almanac_side(home, base_ref, data, steps)
    direct, almanac = [], []
    for i in range(reps):
        direct.append(direct_side(base, data, steps, work / f"direct-{i}"))
        almanac.append(almanac_side(home, base_ref, data, steps))
    # The best of each side: on a shared machine the slow runs are other people's load.
    med = {side: {k: min(r[k] for r in runs) for k in ("whole_s", "steps_s")}
           for side, runs in (("direct", direct), ("almanac", almanac))}
    out: dict[str, Any] = {
        "model": what, "rows": rows, "steps": steps, "reps": reps,
        "settings": settings(steps).to_json(),
        "direct": {**med["direct"], "runs": direct},
        "almanac": {**med["almanac"], "runs": almanac},
        "ratio_steps": med["direct"]["steps_s"] / med["almanac"]["steps_s"],
        "ratio_whole": med["direct"]["whole_s"] / med["almanac"]["whole_s"],
        "examples_per_s": {"direct": max(r["examples_per_s"] for r in direct),
                           "almanac": max(r["examples_per_s"] for r in almanac)},
    }
    if not in_process_only:
        out["processes"] = processes(home, base, base_ref, data, steps)
        p = out["processes"]
        out["ratio_process"] = p["direct"]["wall_s"] / p["almanac"]["wall_s"]
    return out


def _table(r: dict[str, Any]) -> str:
    t = r["train"]
    lines = [f"train: {t['model']}, {t['rows']} rows, {t['steps']} steps, best of {t['reps']}",
             f"{'':10} {'steps s':>9} {'whole s':>9} {'ex/s':>8}"]
    for side in ("direct", "almanac"):
        lines.append(f"{side:10} {t[side]['steps_s']:9.2f} {t[side]['whole_s']:9.2f} "
                     f"{t['examples_per_s'][side]:8.1f}")
    lines.append(f"overhead ratio (direct / almanac): steps {t['ratio_steps']:.3f}, "
                 f"whole {t['ratio_whole']:.3f}")
    if p := t.get("processes"):
        lines.append(f"processes: direct {p['direct']['wall_s']:.1f} s, "
                     f"{p['direct']['peak_rss_bytes'] / 2**20:.0f} MiB; almanac "
                     f"{p['almanac']['wall_s']:.1f} s, {p['almanac']['peak_rss_bytes'] / 2**20:.0f} "
                     f"MiB (ratio {t['ratio_process']:.3f})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.train", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=512, help="teacher answers curated")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--model", help="the base: a directory or Hub id (default: tiny Llama)")
    parser.add_argument("--smoke", action="store_true", help="small sizes, nothing recorded")
    add_output_options(parser, RESULTS)
    args = parser.parse_args(argv)
    if args.smoke:
        args.rows, args.steps, args.reps = 40, 2, 1
    output = args.output if args.output or args.smoke else RESULTS
    results: dict[str, Any] = {"benchmark": "train",
                               "at": datetime.now(UTC).isoformat(timespec="seconds")}
    with tempfile.TemporaryDirectory(prefix="almanac-bench-") as tmp:
        if args.quiet_below is not None:
            results["quiet"] = wait_for_quiet(args.quiet_below)
        results["load_before"] = load_average()
        results["train"] = run(Path(tmp), args.rows, args.steps, args.reps, args.model,
                               in_process_only=args.smoke)
        results["load_after"] = load_average()
    results["machine"] = machine("torch", "transformers", "trl", "peft", "accelerate", "almanac")
    report(results, _table(results), None if args.smoke and not args.output else output)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`almanac train` and `almanac distill`: a LoRA adapter from a curated set, and the whole
loop from a teacher job to a measured student."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from almanac.cli.base import Env, emit_json, json_option, pass_env, verbose_option, warn
from almanac.paths import Home

if TYPE_CHECKING:  # the training room loads when a command runs, not for --help
    from batch.run.stopping import Stopped
    from batch.train.settings import TrainSettings
    from batch.train.train import Places, TrainReport


def train_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The hyperparameters `train` and `distill` share (checked by TrainSettings)."""
    options = [
        click.option("--rank", type=int, default=8, show_default=True, help="LoRA rank r."),
        click.option("--alpha", type=float, default=16.0, show_default=True,
                     help="LoRA alpha (the update is scaled by alpha / r)."),
        click.option("--targets", default="q_proj,v_proj", show_default=True,
                     help="Modules to adapt, comma-separated, or all-linear."),
        click.option("--steps", type=int, help="Train this many steps (instead of --epochs)."),
        click.option("--epochs", type=float, help="Train this many passes over the train split "
                                                  "(default 3)."),
        click.option("--lr", type=float, default=2e-4, show_default=True, help="Learning rate."),
        click.option("--batch-size", type=int, default=8, show_default=True),
        click.option("--max-length", type=int, default=512, show_default=True,
                     help="Longest example in tokens; longer ones are cut."),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--force", is_flag=True, help="Train again even if an adapter of the same "
                                                   "inputs exists, and replace what holds NAME."),
    ]
    return functools.reduce(lambda f, option: option(f), reversed(options), command)


def _settings(options: dict[str, Any]) -> TrainSettings:
    from batch.train.settings import TrainSettings

    return TrainSettings(
        rank=options["rank"], alpha=options["alpha"],
        targets=TrainSettings.parse_targets(options["targets"]), steps=options["steps"],
        epochs=options["epochs"], lr=options["lr"], batch_size=options["batch_size"],
        max_length=options["max_length"], seed=options["seed"])


def places(home: Home) -> Places:
    from batch.train.train import Places

    return Places(home.models, home.training, home.predictions, home.locks)


def train_line(r: TrainReport) -> str:
    where = f" (--where {r.where})" if r.where else ""
    rows = f"{r.train_rows:,} train, {r.validation_rows:,} validation rows{where}"
    if r.status == "planned":
        return (f"{r.name}: would train a LoRA adapter of {r.base} on {rows}, as {r.form} "
                f"examples (key {r.key[:12]})")
    losses = ", ".join(f"{n} loss {v:.4f}" for n, v in (("train", r.train_loss),
                                                       ("eval", r.eval_loss)) if v is not None)
    if r.status == "reused":
        return (f"{r.name}: reused: an adapter of {r.base} trained on the same inputs "
                f"({r.steps} steps{', ' + losses if losses else ''}): {r.path}")
    resumed = f", resumed from step {r.resumed_from_step}" if r.resumed_from_step else ""
    return (f"{r.name}: trained {r.steps} steps{resumed} in {r.seconds or 0:.1f} s on {r.device} "
            f"({r.dtype}), {rows}{'; ' + losses if losses else ''}: {r.path}")


def _stopped(ctx: click.Context, stop: Stopped, *, now: bool = False) -> None:
    from batch.train.train import StoppedTraining

    done = stop.result
    if isinstance(done, StoppedTraining) and done.checkpoint is not None:
        warn(f"{done.name}: stopped by {stop.name} at step {done.step}/{done.total}: checkpoint "
             f"saved in {done.checkpoint}; run the same command again to resume from it")
    elif isinstance(done, StoppedTraining):
        warn(f"{done.name}: stopped by {stop.name} before training began: nothing to resume")
    else:
        warn(f"stopped by {stop.name}: what was finished is written; run again to go on")
    if now:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(stop.exit_code)
    ctx.exit(stop.exit_code)


@click.command()
@click.option("--base", required=True, metavar="REF",
              help="The model to adapt: a catalog model with local weights, or a Hub repo id "
                   "(fetched into the Hugging Face cache and catalogued).")
@click.option("--data", required=True, type=click.Path(file_okay=False),
              help="A directory `almanac curate` wrote: the files its README.md card names.")
@click.option("--name", required=True, metavar="ORG/NAME",
              help="The adapter's name in the catalog (it lands in the home's models/NAME).")
@click.option("--where", help='Train only on rows this holds for, e.g. "score >= 1" (curate\'s '
                              "filter language: score, candidate, model, prompt, output, …).")
@click.option("--format", "form", type=click.Choice(["auto", "text", "chat"]), default="auto",
              show_default=True, help="Rows as plain prompt/completion text, or through the "
                                      "base's chat template (auto: chats for a chat model).")
@train_options
@click.option("--dry-run", is_flag=True, help="Check the inputs and say what would be trained; "
                                              "write nothing.")
@json_option
@pass_env
@click.pass_context
def train(ctx: click.Context, env: Env, base: str, data: str, name: str, where: str | None,
          form: str, dry_run: bool, json_: bool, **options: Any) -> None:
    """Train a LoRA adapter of BASE on a curated set with TRL's SFTTrainer and PEFT, and
    register it as an adapter of BASE with its lineage (the jobs and candidates its rows
    came from, the set's digest and row counts, the settings, the losses).

    The same inputs again reuse the adapter (--force trains again). SIGINT / SIGTERM save
    a checkpoint; the same command then resumes from it.

    Exit codes: 0 ok, 1 error (disk full, base out of reach), 2 bad option, data, base or
    name, 130 / 143 stopped by SIGINT / SIGTERM (checkpoint saved)."""
    from batch.run.stopping import Stopped, catch_stops
    from batch.train.progress import TrainProgress
    from batch.train.train import TrainRequest
    from batch.train.train import train as run_training

    request = TrainRequest(base, Path(data), name, _settings(options), where, form,
                           retrain=options["force"], replace=options["force"], dry_run=dry_run)
    catalog = env.catalog_readonly() if dry_run else env.catalog()
    with catch_stops():
        try:
            report = run_training(catalog, places(env.home), request, TrainProgress(name))
        except Stopped as stop:
            _stopped(ctx, stop)
            return
    if json_:
        emit_json(report.to_json())
    else:
        click.echo(train_line(report))


@click.command()
@click.argument("teacher_job", type=click.Path(dir_okay=False))
@click.option("--student", required=True, metavar="REF",
              help="The student's base: a catalog model or a Hub repo id.")
@click.option("--name", required=True, metavar="ORG/NAME", help="The student adapter's name.")
@click.option("--where", help='Learn only the teacher\'s answers this holds for, e.g. '
                              '"score >= 1" (curate\'s filter language).')
@click.option("--split", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.8,
              show_default=True, help="The share of rows to train on; the rest measure.")
@click.option("--teacher", metavar="LABEL",
              help="The teacher job's candidate to learn from (when it has several).")
@train_options
@verbose_option
@json_option
@pass_env
@click.pass_context
def distill(ctx: click.Context, env: Env, teacher_job: str, student: str, name: str,
            where: str | None, split: float, teacher: str | None, json_: bool,
            **options: Any) -> None:
    """Distil a cheaper specialist from TEACHER_JOB: run the teacher where anything is
    missing, curate its answers (--where, --split), train a LoRA adapter of the student
    on the train split, then run the validation rows alone (never trained on) with the
    teacher, the student's base and the student, scored by the teacher job's [score],
    and compare them. Every step is cached: a rerun with nothing new does nothing.

    Exit codes: 0 ok, 1 error, 2 bad job, option or name, 75 a job locked,
    130 / 143 stopped by SIGINT / SIGTERM."""
    from almanac.cli.score_cmds import echo_comparison
    from batch.data.chains import UpstreamReader
    from batch.run.runner import Runner, configure_logging
    from batch.run.stopping import Stopped, catch_stops
    from batch.train.distill import Distillation, DistillRequest
    from batch.train.progress import TrainProgress

    configure_logging()
    request = DistillRequest(Path(teacher_job), student, name, where, split, teacher,
                             _settings(options), retrain=options["force"],
                             replace=options["force"])
    with catch_stops():
        runner = Runner(env.catalog(), env.home.predictions, env.home.locks,
                        upstream=UpstreamReader(env.home.predictions))
        try:
            steps = Distillation(runner, places(env.home), env.home.distill, request, say=warn,
                                 progress=TrainProgress(name))
            report = steps.run()
        except Stopped as stop:
            # What was finished is on disk; an engine's teardown may take seconds a
            # stopping service does not give (as `almanac run`): exit at once.
            _stopped(ctx, stop, now=True)
            return
        finally:
            runner.close()
    if json_:
        emit_json(report.to_json())
        return
    echo_comparison(steps.entries)
    click.echo(report.summary)

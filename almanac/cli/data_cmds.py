"""`almanac curate`: a job's predictions as a supervised fine-tuning dataset."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from almanac.cli.base import Env, echo_table, emit_json, json_option, pass_env, stoppable, warn


@click.command()
@click.argument("job")
@click.option("-o", "--output", "output", required=True, type=click.Path(), metavar="DIR",
              help="The dataset's directory (created; the set it held is replaced as one). "
                   "An existing path that is not a directory is refused.")
@click.option("--where", help='Keep only rows this holds for, e.g. "score >= 0.5 and '
                              'finish_reason == \'stop\'" (columns: score, finish_reason, '
                              "prompt_tokens, output_tokens, prompt_length, output_length, "
                              "output, candidate, model, ...; input fields as row.NAME).")
@click.option("--dedupe", type=click.Choice(["exact", "near"]),
              help="Drop repeated conversations: identical ones, or near-identical ones too.")
@click.option("--split", type=click.FloatRange(0, 1, min_open=True), default=0.9,
              show_default=True, help="The share of rows to train on; the rest validate "
                                      "(1: no validation split).")
@click.option("--candidate", help="Only this candidate's answers (default: every current one).")
@json_option
@pass_env
def curate(env: Env, job: str, output: str, where: str | None, dedupe: str | None,
           split: float, candidate: str | None, json_: bool) -> None:
    """Write JOB's predictions as a chat fine-tuning dataset: train and validation
    splits in Parquet and JSON Lines (`messages` plus provenance columns), each named
    by a digest of its rows, and a README.md dataset card naming them, which
    `datasets.load_dataset(DIR)` and TRL's SFT trainer read as they are.

    Exit codes: 0 ok, 1 error (an unknown job; the set could not be written:
    permissions, a full disk; the set the directory held is kept), 2 bad filter or
    option, or -o naming something that is not a directory, 75 another curate is
    writing DIR."""
    from batch.data.curate import curate as make_dataset

    args = [job, "-o", output]
    args += ["--where", where] if where else []
    args += ["--dedupe", dedupe] if dedupe else []
    args += ["--split", f"{split:g}"] + (["--candidate", candidate] if candidate else [])
    with stoppable("curate", "the set the directory held is kept"):
        catalog = env.catalog_readonly() if env.home.catalog_db.exists() else None
        report = make_dataset(env.home.predictions, job, Path(output),
                              command="almanac curate " + shlex.join(args), where=where,
                              dedupe_by=dedupe, split=split, candidate=candidate,
                              catalog=catalog)
    for line in report.warnings:
        warn(f"license warning: {line}")
    if json_:
        emit_json(report.to_json())
        return
    echo_table([[step, f"{n:,}"] for step, n in report.counts]
               + [[f"{s} split", f"{report.split_rows.get(s, 0):,}"]
                  for s in ("train", "validation")], ["STEP", "ROWS"])
    warn(f"dataset: {report.output} ({', '.join(report.files)})")

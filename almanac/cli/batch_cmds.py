"""`almanac run`, `almanac runs` and `almanac demo`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from almanac.cli.base import (
    Env,
    echo_table,
    emit_json,
    json_option,
    pass_env,
    translate,
    warn,
)
from schemas.errors import ExitCode

if TYPE_CHECKING:  # the runner (pyarrow, SQLAlchemy) loads only when a job runs, not for --help
    from batch.run.result import RunResult


def _exit_code(statuses: list[str]) -> int:
    if "error" in statuses:
        return ExitCode.ERROR
    if "locked" in statuses:
        return ExitCode.LOCKED
    if "failed_rows" in statuses:
        return ExitCode.FAILED_ROWS
    return ExitCode.OK


def _human(result: RunResult) -> str:
    p = result.plan
    if result.status == "planned":
        return (f"{result.job}: {p['inputs']} inputs: {p['cached']} cached, {p['copy']} to copy, "
                f"{p['missing']} missing ({p['distinct_missing']} distinct), "
                f"{p['invalid']} invalid, {p['failed_before']} failed before")
    line = (f"{result.job}: {result.status}: {p['inputs']} inputs, {result.cached} cached, "
            f"{result.copied} copied, {result.generated} generated, {result.failed} failed "
            f"in {result.total_s:.1f} s")
    if result.engine_started:
        line += f" (engine start {result.engine_start_s:.1f} s"
        if result.tokens_per_s:
            line += f", {result.tokens_per_s:.0f} output tokens/s"
        line += ")"
    elif not p["missing"]:
        line += " (engine not started: nothing missing)"
    return line


@click.command()
@click.argument("jobs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Plan only: count cached, missing and invalid rows.")
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N input rows.")
@click.option("--retry-failed", is_flag=True, help="Try rows that failed in the engine before again.")
@json_option
@pass_env
def run(env: Env, jobs: tuple[str, ...], dry_run: bool, limit: int | None, retry_failed: bool,
        json_: bool) -> None:
    """Run batch jobs (TOML files): generate what is missing, cache everything.

    Exit codes: 0 ok, 1 error, 2 invalid spec, 3 some rows failed, 75 job locked."""
    from batch.run.runner import Runner, configure_logging
    from batch.run.spec import load_spec

    configure_logging()
    specs = [load_spec(path) for path in jobs]  # every spec is checked before any work
    runner = Runner(env.catalog(), env.home.predictions, env.home.locks)
    results, statuses = [], []
    try:
        for spec in specs:
            try:
                result = runner.run(spec, dry_run=dry_run, limit=limit, retry_failed=retry_failed)
            except Exception as exc:
                translated = translate(exc) if len(specs) > 1 else None
                if translated is None:
                    raise
                # cron with several jobs: one job's problem must not hide the others' results
                warn(f"{spec.name}: {translated.message}")
                statuses.append("locked" if translated.exit_code == ExitCode.LOCKED else "error")
                continue
            results.append(result)
            statuses.append(result.status)
            if not json_:
                click.echo(_human(result))
    finally:
        runner.close()
    if json_:
        data = [r.to_json() for r in results]
        emit_json(data[0] if len(data) == 1 else data)
    code = _exit_code(statuses)
    if code:
        sys.exit(code)


@click.command()
@click.option("--job", help="Only this job's runs.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@json_option
@pass_env
def runs(env: Env, job: str | None, limit: int, json_: bool) -> None:
    """Batch runs, newest first, with their counts and measured speed."""
    from catalog.runs import list_runs

    with env.catalog().sessions() as s:
        records = list_runs(s, job, limit)
    if json_:
        emit_json([r.to_json() for r in records])
        return
    echo_table(
        [[r.id[:8], r.job, r.status, r.started_at.strftime("%Y-%m-%d %H:%M:%S"), str(r.inputs),
          str(r.cached), str(r.copied), str(r.generated), str(r.failed),
          f"{r.tokens_per_s:.0f}" if r.tokens_per_s else "",
          f"{r.duration_s:.1f}" if r.duration_s is not None else "", (r.error or "")[:60]]
         for r in records],
        ["RUN", "JOB", "STATUS", "STARTED", "INPUTS", "CACHED", "COPIED", "GENERATED", "FAILED",
         "TOK/S", "SECONDS", "ERROR"],
    )


@click.command()
@click.option("--job", "job_path", type=click.Path(dir_okay=False, exists=True),
              help="Run this job instead of the fruit example.")
@json_option
@pass_env
def demo(env: Env, job_path: str | None, json_: bool) -> None:
    """Build a tiny fruit specialist, register it, and precompute its predictions.

    Run it again and every prediction comes from the cache, without starting the engine."""
    from almanac.demo.run import run_demo

    result, preview, (right, total) = run_demo(env.catalog(), env.home,
                                               Path(job_path) if job_path else None)
    if json_:
        emit_json({"run": result.to_json(), "predictions": preview,
                   "accuracy": {"correct": right, "total": total}})
    else:
        click.echo(_human(result))
        echo_table([[p["input_id"], p["fruit"], p["output"], p["expected"]] for p in preview],
                   ["ID", "FRUIT", "PREDICTION", "EXPECTED"])
        click.echo(f"{right}/{total} predictions match the expected fruit type")
        warn(f"predictions: {env.home.predictions / result.job} (a Parquet dataset)")
    code = _exit_code([result.status])
    if code:
        sys.exit(code)


def register(cli: click.Group) -> None:
    cli.add_command(run)
    cli.add_command(runs)
    cli.add_command(demo)

"""`almanac run`, `almanac runs` and `almanac demo`."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from almanac.cli.base import (
    MAX_INT,
    Env,
    echo_table,
    emit_json,
    json_option,
    pass_env,
    verbose_option,
    warn,
)
from almanac.cli.score_cmds import check_scores, score_after_run
from schemas.errors import AlmanacError, ExitCode

if TYPE_CHECKING:  # the runner (pyarrow, SQLAlchemy) loads only when a job runs, not for --help
    from batch.run.executors.base import Executor
    from batch.run.result import RunResult
    from batch.run.spec.ray_settings import RayAddress
    from batch.run.stopping import Stopped


# Several jobs exit with the gravest of their codes: an error, then a lock, then failed rows.
_GRAVEST = (ExitCode.ERROR, ExitCode.LOCKED, ExitCode.FAILED_ROWS)


def _exit_code(codes: list[int]) -> int:
    for code in _GRAVEST:
        if code in codes:
            return code
    return ExitCode.ERROR if any(codes) else ExitCode.OK


def _job_failed(exc: AlmanacError) -> int:
    """A job of several that could not run: locked, or an error (whatever its own code)."""
    return ExitCode.LOCKED if exc.exit_code == ExitCode.LOCKED else ExitCode.ERROR


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
        starts = f"{result.engine_starts} engine starts" if result.engine_starts > 1 \
            else "engine start"
        line += f" ({starts} {result.engine_start_s:.1f} s"
        if result.tokens_per_s:
            line += f", {result.tokens_per_s:.0f} output tokens/s"
        line += ")"
    elif not p["missing"]:
        line += " (engine not started: nothing missing)"
    if result.executor == "ray":
        line += f" on Ray ({result.replicas} replica{'s' if result.replicas != 1 else ''})"
    if result.engine_log:
        line += f"\n  the engine's output: {result.engine_log}"
    if len(result.candidates) > 1:  # each candidate's share, one line each
        line += "".join(f"\n  {c.label}: {c.inputs} inputs, {c.cached} cached, {c.copied} "
                        f"copied, {c.generated} generated, {c.failed} failed"
                        for c in result.candidates)
    return line


def _executor(ray: RayAddress | None) -> Executor | None:
    """Where the runs generate: on the Ray cluster at `ray`, else (None) in this process."""
    if ray is None:
        return None
    from batch.run.executors.ray import RayExecutor

    return RayExecutor(ray)


def _end(stopped: Stopped | None, codes: list[int]) -> None:
    """A run command's exit: at once after a stop signal, else the gravest job's code."""
    if stopped is not None:
        warn(f"stopped by {stopped.name}: what was finished is written and indexed; "
             "run again to go on")
        _exit_now(stopped.exit_code)
    code = _exit_code(codes)
    if code:
        sys.exit(code)


def _exit_now(code: int) -> None:
    """Exit at once after a stop signal. Everything finished is on disk: shards fsynced
    and renamed, index and catalog committed (SQLite keeps a commit through a process
    exit), the lock the kernel's. Tearing the engine down and collecting its memory
    takes seconds that a stopping service (systemd, a cron timeout) may not have."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


@click.command()
@click.argument("jobs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--dry-run", is_flag=True,
              help="Plan only: count cached, missing and invalid rows. Writes nothing.")
@click.option("--limit", type=click.IntRange(1, MAX_INT), help="Only the first N input rows.")
@click.option("--retry-failed", is_flag=True, help="Try rows that failed in the engine before again.")
@click.option("--ray", "ray_address", metavar="ADDRESS", envvar="ALMANAC_RAY_ADDRESS",
              help="Generate on a Ray cluster through Ray Data LLM: auto, HOST:PORT, "
                   "ray://HOST:10001, or local (a throwaway cluster on this machine). "
                   "Default: $ALMANAC_RAY_ADDRESS; unset, in this process.")
@verbose_option
@json_option
@pass_env
def run(env: Env, jobs: tuple[str, ...], dry_run: bool, limit: int | None, retry_failed: bool,
        ray_address: str | None, json_: bool) -> None:
    """Run batch jobs (TOML files): generate what is missing, cache everything.

    Exit codes: 0 ok, 1 error, 2 invalid spec, 3 some rows failed, 75 job locked,
    130 / 143 stopped by SIGINT / SIGTERM (what was finished is written and indexed)."""
    from batch.data.chains import UpstreamReader
    from batch.run.runner import Runner, configure_logging
    from batch.run.spec.job import load_spec
    from batch.run.spec.ray_settings import RayAddress
    from batch.run.stopping import Stopped, catch_stops

    configure_logging()
    ray = RayAddress.parse(ray_address) if ray_address else None
    specs = [load_spec(path) for path in jobs]  # every spec is checked before any work
    check_scores(specs)
    several = len(specs) > 1
    results: list[dict[str, Any]] = []
    codes: list[int] = []
    stopped: Stopped | None = None
    with catch_stops():
        runner = None
        try:
            # A dry run writes nothing: not even a new home or catalog.
            runner = Runner(env.catalog_readonly() if dry_run else env.catalog(),
                            env.home.predictions, env.home.locks, executor=_executor(ray),
                            upstream=UpstreamReader(env.home.predictions))
            for spec in specs:
                try:
                    result = runner.run(spec, dry_run=dry_run, limit=limit,
                                        retry_failed=retry_failed)
                except Stopped as stop:
                    if stop.result is not None:
                        results.append(stop.result.to_json())
                        codes.append(stop.result.exit_code)
                        if not json_:
                            click.echo(_human(stop.result))
                    raise
                except AlmanacError as exc:
                    if not several:
                        raise
                    # cron with several jobs: one job's problem must not hide the others'
                    warn(f"{spec.name}: {exc}")
                    code = _job_failed(exc)
                    results.append({"job": spec.name,
                                    "status": "locked" if code == ExitCode.LOCKED else "error",
                                    "error": str(exc)})
                    codes.append(code)
                    continue
                results.append(result.to_json())
                codes.append(result.exit_code)
                if not json_:
                    click.echo(_human(result))
                # Scores follow the run (batch.score sits above the runner: called here).
                codes.append(score_after_run(runner, spec, result, results[-1], echo=not json_))
        except Stopped as stop:
            stopped = stop
        finally:
            if runner is not None and stopped is None:
                runner.close()
    if json_ and results:
        emit_json(results if several else results[0])
    _end(stopped, codes)


@click.command()
@click.option("--job", help="Only this job's runs.")
@click.option("--limit", type=click.IntRange(1, MAX_INT), default=50, show_default=True)
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
@verbose_option
@json_option
@pass_env
def demo(env: Env, job_path: str | None, json_: bool) -> None:
    """Train a tiny fruit specialist and a generalist, distil a LoRA student of the
    generalist from the specialist's answers (`almanac train`), register them, run the
    three over the fruit job, score them and compare them; then the student on the
    fruits it never trained on.

    Run it again and every prediction comes from the cache, without starting the engine."""
    from almanac.cli.score_cmds import echo_comparison
    from almanac.demo.run import run_demo

    done = run_demo(env.catalog(), env.home, Path(job_path) if job_path else None)
    if json_:
        emit_json({"run": done.result.to_json(), "predictions": done.preview,
                   "accuracy": {label: {"correct": right, "total": total}
                                for label, (right, total) in done.accuracy.items()},
                   "compare": [e.to_json() for e in done.comparison],
                   "distill": done.distill.to_json() if done.distill else None})
    else:
        click.echo(_human(done.result))
        labels = list(done.accuracy)
        echo_table([[p["input_id"], p["fruit"] or "", *(p["answers"][label] for label in labels),
                     p["expected"]] for p in done.preview],
                   ["ID", "FRUIT", *(label.removeprefix("almanac/") for label in labels),
                    "EXPECTED"])
        for label, (right, total) in done.accuracy.items():
            click.echo(f"{label}: {right}/{total} right")
        echo_comparison(done.comparison)
        if done.distill is not None:
            click.echo(f"on the fruits the student never trained on: {done.distill.summary}")
        warn(f"predictions: {env.home.predictions / done.result.job} (a Parquet dataset)")
    if done.result.exit_code:
        sys.exit(done.result.exit_code)

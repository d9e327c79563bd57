"""`almanac cache verify|gc|repair`: checking the cache, collecting what no lookup needs,
and putting it right after damage or a crash."""

from __future__ import annotations

import sys

import click

from almanac.cli.base import Env, echo_table, emit_json, json_option, pass_env, stoppable, warn
from schemas.errors import ExitCode


@click.group()
def cache() -> None:
    """Check and clean the prediction cache."""


@cache.command()
@click.argument("job", required=False)
@json_option
@pass_env
def verify(env: Env, job: str | None, json_: bool) -> None:
    """Check every shard (readable, rows and checksum as indexed) and the index against
    the files. Exit 1 if anything is damaged."""
    from batch.cache.verify import verify as run_verify

    report = run_verify(env.home.predictions, job)
    if json_:
        emit_json(report.to_json())
    else:
        if report.problems:
            echo_table([[f.job, f.shard or "", f.kind, f.detail] for f in report.problems],
                       ["JOB", "SHARD", "PROBLEM", "DETAIL"])
        for note in report.notes:
            warn(f"note: {note.job}/{note.shard}: {note.kind}: {note.detail}")
        warn(f"{len(report.jobs)} jobs, {report.shards} shards, {report.rows} rows, "
             f"{report.bytes} bytes checked: "
             + ("ok" if report.ok else f"{len(report.problems)} problems; `almanac cache "
                                        f"repair{' ' + job if job else ''}` sets them right"))
    if not report.ok:
        sys.exit(ExitCode.ERROR)


@cache.command()
@click.argument("job", required=False)
@click.option("--dry-run", is_flag=True, help="Report what would be removed; change nothing.")
@click.option("--keep-versions", is_flag=True,
              help="Keep shards holding older versions (`query --all`); remove only shards "
                   "nothing references.")
@json_option
@pass_env
def gc(env: Env, job: str | None, dry_run: bool, keep_versions: bool, json_: bool) -> None:
    """Remove superseded shards and temporary files left by crashes. A shard is
    superseded when none of its rows is an input's latest for a candidate the job's last
    run named: the predictions of a candidate dropped from the job go too (preview with
    --dry-run). Exits 75 without changing anything while a run is active."""
    from batch.cache.gc import gc as run_gc

    with stoppable("cache gc", "what it had collected is gone, the rest is as it was"):
        report = run_gc(env.home.predictions, env.home.locks, job=job, dry_run=dry_run,
                        keep_versions=keep_versions)
    if json_:
        emit_json(report.to_json())
        return
    rows = [[j.job, c.shard, str(c.rows), str(c.bytes)] for j in report.jobs for c in j.collected]
    if rows:
        echo_table(rows, ["JOB", "SHARD", "ROWS", "BYTES"])
    verb = "would remove" if dry_run else "removed"
    tmp = sum(j.removed_tmp for j in report.jobs)
    indexed = sum(j.indexed for j in report.jobs)
    warn(f"{verb} {report.shards_removed} shards ({report.bytes_freed} bytes) and {tmp} "
         f"temporary files; {'would index' if dry_run else 'indexed'} {indexed} unindexed shards")


@cache.command()
@click.argument("job", required=False)
@click.option("--dry-run", is_flag=True, help="Report what would be repaired; change nothing.")
@json_option
@pass_env
def repair(env: Env, job: str | None, dry_run: bool, json_: bool) -> None:
    """Make the index say only what the shards hold. A missing or damaged shard's rows
    leave the index (a damaged file is kept aside as .NAME.damaged, never deleted), so
    the job's next run generates exactly them again; crash leftovers are cleaned up and
    shards that landed unindexed are checked and indexed. Exits 75 without changing
    anything while a run is active."""
    from batch.cache.repair import repair as run_repair

    with stoppable("cache repair", "what it had repaired stays repaired; run it again for "
                                   "the rest"):
        report = run_repair(env.home.predictions, env.home.locks, job=job, dry_run=dry_run)
    if json_:
        emit_json(report.to_json())
        return
    if report.shards:
        echo_table([[r.job, r.shard, r.problem, str(r.records), str(r.inputs), r.kept_as or ""]
                    for r in report.shards],
                   ["JOB", "SHARD", "PROBLEM", "RECORDS", "INPUTS", "KEPT AS"])
    would = "would " if dry_run else ""
    parts = [f"{len(report.jobs)} jobs checked"]
    if report.index_damaged:
        parts.append(f"{report.index_damaged}; " + (
            "would set it aside and rebuild it from the shards" if dry_run else
            f"set aside as {report.index_kept_as}, rebuilt from the shards"))
    if report.shards:
        jobs = sorted({r.job for r in report.shards})
        parts.append(f"{would}drop {len(report.shards)} shards from the index: the next run of "
                     f"{', '.join(jobs)} generates {report.inputs} inputs again")
    if report.rolled_back:
        parts.append(f"{would}make {report.rolled_back} inputs missing whose latest version a "
                     "damaged shard held (their next run generates them)")
    if report.rebuilt:
        parts.append(f"{would}rebuild the index entries of {', '.join(report.rebuilt)} from their files")
    if report.indexed or report.removed_tmp:
        parts.append(f"{would}index {report.indexed} shards that landed unindexed and remove "
                     f"{report.removed_tmp} temporary files")
    if not report.changed:
        parts.append("nothing to repair")
    warn("; ".join(parts))

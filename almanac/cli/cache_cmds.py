"""`almanac cache repair`: putting the cache right after damage or a crash (the `cache`
group and its `verify` and `gc` live in query_cmds)."""

from __future__ import annotations

import click

from almanac.cli.base import Env, echo_table, emit_json, json_option, pass_env, warn


@click.command()
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
    if report.rebuilt:
        parts.append(f"{would}rebuild the index entries of {', '.join(report.rebuilt)} from their files")
    if report.indexed or report.removed_tmp:
        parts.append(f"{would}index {report.indexed} shards that landed unindexed and remove "
                     f"{report.removed_tmp} temporary files")
    if not report.changed:
        parts.append("nothing to repair")
    warn("; ".join(parts))

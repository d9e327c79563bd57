"""`almanac score` and `almanac compare`: predictions against references, candidates
side by side. Scoring reads the cache, never the engine (a judge's unanswered calls
aside); comparing only reads."""

from __future__ import annotations

import math
import shutil
from typing import TYPE_CHECKING, Any

import click

from almanac.cli.base import Env, echo_table, emit_json, json_option, pass_env, warn
from schemas.errors import AlmanacError, ExitCode, UsageError

if TYPE_CHECKING:  # the rooms load when a command runs, not for --help
    from batch.run.result import RunResult
    from batch.run.runner import Runner
    from batch.run.spec.job import JobSpec
    from batch.score.compare import CandidateComparison
    from batch.score.scoring import ScoreReport


def _num(value: float | None, fmt: str = "{:.3f}") -> str:
    return "" if value is None else fmt.format(value)


def _params(n: int | None) -> str:
    if n is None:
        return ""
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def score_line(report: ScoreReport) -> str:
    """One line for a scoring (the run command prints it after the run's own)."""
    line = (f"{report.job}: scored {report.metric}: {report.computed} computed, "
            f"{report.kept} unchanged, {report.errors} could not be scored")
    if report.judge is not None:
        j = report.judge
        line += (f"; judge {j.job}: {j.cached} cached, {j.generated} generated"
                 + (" (engine not started)" if not j.engine_started else ""))
    return line


def check_scores(specs: list[JobSpec]) -> None:
    """Every job's [score] checked before any work (SpecError naming file and field)."""
    from batch.score.settings import ScoreSpec

    for spec in specs:
        ScoreSpec.of(spec)


def score_after_run(runner: Runner, spec: JobSpec, result: RunResult, summary: dict[str, Any],
                    *, echo: bool) -> int:
    """Score a job right after its run (`almanac run`), putting the report in the run's
    JSON `summary` under "score". A scoring that fails is reported without hiding the
    run's own result; the exit code returned (0, 1, or 75 for a judge job locked) joins
    the run's."""
    from batch.score.scoring import score_run

    if result.status not in ("ok", "failed_rows"):
        return ExitCode.OK
    try:
        report = score_run(runner, spec, result)
    except AlmanacError as exc:
        warn(f"{spec.name}: scoring: {exc}")
        summary["score"] = {"error": str(exc)}
        return ExitCode.LOCKED if exc.exit_code == ExitCode.LOCKED else ExitCode.ERROR
    if report is not None:
        summary["score"] = report.to_json()
        if echo:
            click.echo(score_line(report))
        for warning in report.warnings:
            warn(warning)
    return ExitCode.OK


def _echo_report(report: ScoreReport) -> None:
    click.echo(score_line(report))
    echo_table([[c.label, c.model, c.adapter or "", str(c.n), str(c.errors), _num(c.score),
                 f"[{_num(c.ci_low)}, {_num(c.ci_high)}]" if c.ci_low is not None else ""]
                for c in sorted(report.candidates, key=lambda c: -(c.score or -1.0))],
               ["CANDIDATE", "MODEL", "ADAPTER", "N", "ERRORS", "SCORE", "95% CI"])
    for warning in report.warnings:
        warn(warning)


@click.command()
@click.argument("jobs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@json_option
@pass_env
def score(env: Env, jobs: tuple[str, ...], json_: bool) -> None:
    """Score the cached predictions of jobs (TOML files) against their [score] reference.

    Only scores whose metric, reference or prediction changed are computed; the engine
    starts only for a judge's calls it has not answered before. Each candidate's mean is
    recorded in the catalog as a measured eval of its model (task = the job).

    Exit codes: 0 ok, 1 error, 2 invalid spec or no [score], 75 judge job locked."""
    from batch.data.chains import UpstreamReader
    from batch.run.runner import Runner, configure_logging
    from batch.run.spec.job import load_spec
    from batch.score.scoring import check_score, score_run

    configure_logging()
    catalog = env.catalog()
    specs = [load_spec(path) for path in jobs]
    for spec in specs:  # every spec is checked before any work
        if check_score(spec, catalog) is None:
            raise UsageError(f"{spec.path}: score: the job has no [score] table "
                             "(give a `reference` template and a `metric`)")
    runner = Runner(catalog, env.home.predictions, env.home.locks,
                    upstream=UpstreamReader(env.home.predictions))
    reports = []
    try:
        for spec in specs:
            report = score_run(runner, spec)
            assert report is not None  # checked above
            reports.append(report)
            if not json_:
                _echo_report(report)
    finally:
        runner.close()
    if json_:
        data = [r.to_json() for r in reports]
        emit_json(data[0] if len(data) == 1 else data)


def echo_comparison(entries: list[CandidateComparison]) -> None:
    """The comparison table on stdout, its legend on stderr (also the demo's ending)."""
    from batch.score.compare import usd_text

    echo_table(
        [["*" if e.pareto else "", e.label, e.model, e.adapter or "", str(e.rows), str(e.failures),
          str(e.n), _num(e.score), f"[{_num(e.ci_low)}, {_num(e.ci_high)}]" if e.n else "",
          _num(e.tokens_per_s, "{:.0f}"), _num(e.engine_start_s, "{:.1f}"),
          _num(e.engine_s, "{:.1f}"), _params(e.parameters), usd_text(e.cost_per_1k)]
         for e in entries],
        ["", "CANDIDATE", "MODEL", "ADAPTER", "ROWS", "FAILED", "N", "SCORE", "95% CI", "TOK/S",
         "START S", "ENGINE S", "PARAMS", "USD/1K ROWS"],
    )
    metric = next((e.metric for e in entries if e.metric), None)
    notes = [f"score: {metric}" if metric else "not scored yet: `almanac score JOB_FILE`"]
    if any(e.pareto for e in entries):
        notes.append("* on the quality/cost Pareto front")
    if entries and all(e.cost_per_1k is None for e in entries):
        notes.append("cost unknown: state a price with --usd-per-hour or [cost] usd_per_hour")
    warn("; ".join(notes))
    for e in entries:
        if e.revision_current is False:
            warn(f"{e.label}: predictions made on {e.model}@{e.revision}; the catalog's current "
                 f"revision is {e.current_revision}: run the job again to compare the current model")


def _plot(entries: list[CandidateComparison], *, err: bool) -> None:
    import plotext as plt

    from batch.score.chart import draw

    width, height = shutil.get_terminal_size((100, 30))
    plt.clear_figure()
    plt.theme("clear")  # the terminal's own background, whatever it is
    plt.plotsize(min(width, 120), max(15, min(height - 2, 30)))
    note = draw(plt, entries)
    chart = plt.build()
    stream = click.get_text_stream("stderr" if err else "stdout")
    # Colours for a terminal; plain text for a file or a pipe.
    click.echo(chart if stream.isatty() else plt.uncolorize(chart), err=err)
    if note:
        warn(note)


def _price(_ctx: click.Context, _param: click.Parameter, value: float | None) -> float | None:
    """A price the HTTP API would take too: finite, over 0, at most MAX_USD_PER_HOUR (click's
    FloatRange lets nan through: it is neither below nor above any bound)."""
    if value is None:
        return None
    from batch.score.compare import MAX_USD_PER_HOUR

    if not math.isfinite(value) or not 0 < value <= MAX_USD_PER_HOUR:
        raise click.BadParameter(f"{value} is not a price per hour over 0 and at most "
                                 f"{MAX_USD_PER_HOUR:,.0f}")
    return value


@click.command()
@click.argument("job")
@click.option("--usd-per-hour", type=float, callback=_price,
              help="The hardware's price per hour, over what the runs recorded ([cost] usd_per_hour).")
@click.option("--plot", is_flag=True, help="Draw score against cost in the terminal.")
@json_option
@pass_env
def compare(env: Env, job: str, usd_per_hour: float | None, plot: bool, json_: bool) -> None:
    """Compare a job's candidates: rows, failures, mean score with a 95% bootstrap
    interval, output tokens/s, engine start and engine-seconds, parameters, and cost per
    1,000 rows; best score first, the quality/cost Pareto front marked with *."""
    from batch.query import Predictions
    from batch.score.compare import compare_job

    with Predictions.at(env.home.predictions, job) as predictions:
        entries = compare_job(env.catalog().sessions, predictions, usd_per_hour)
    if json_:
        emit_json([e.to_json() for e in entries])
    else:
        echo_comparison(entries)
    if plot:
        _plot(entries, err=json_)  # stdout stays JSON with --json

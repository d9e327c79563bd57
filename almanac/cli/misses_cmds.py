"""`almanac misses`: what the OpenAI endpoints of `almanac serve` could not answer from
the cache, `misses run` to generate it (a batch job per model, through the runner),
and `misses clear`."""

from __future__ import annotations

import tomllib
from typing import TYPE_CHECKING, Any

import click

from almanac.cli.base import Env, echo_table, emit_json, json_option, pass_env, warn
from almanac.cli.batch_cmds import _end, _executor, _human, _job_failed
from schemas.errors import AlmanacError, ExitCode

if TYPE_CHECKING:  # the stores and the runner load when a command needs them
    from batch.openai_api.misses import Miss

_MODEL = click.option("--model", metavar="REF",
                      help="Only this model's misses: its catalog reference, or BASE+ADAPTER.")


def _asked(miss: Miss) -> str:
    """What was asked, in short: the prompt, or the last message."""
    text: Any = miss.body.get("prompt")
    if isinstance(text, list):
        text = text[0] if text else ""
    messages = miss.body.get("messages")
    if isinstance(messages, list) and messages and isinstance(messages[-1], dict):
        text = messages[-1].get("content")
    text = text if isinstance(text, str) else str(text)
    text = text.replace("\n", "\\n")
    return text if len(text) <= 50 else text[:49] + "…"


@click.group(invoke_without_command=True)
@_MODEL
@json_option
@click.pass_context
def misses(ctx: click.Context, model: str | None, json_: bool) -> None:
    """Requests `almanac serve` could not answer from the cache (under /v1/): the model,
    what was asked, how often, when first and last. `almanac misses run` generates
    them, after which the same requests are answered from the cache."""
    if ctx.invoked_subcommand is not None:
        return
    from batch.openai_api.misses import read_misses

    env = ctx.find_object(Env)
    assert env is not None
    found, unrecorded = read_misses(env.home.predictions, model)
    if json_:
        emit_json({"misses": [m.to_json() for m in found],
                   "unrecorded": [u.to_json() for u in unrecorded]})
    else:
        echo_table([[m.served, m.endpoint.removeprefix("/v1/"), str(m.seen),
                     f"{m.first_seen:%Y-%m-%d %H:%M:%S}", f"{m.last_seen:%Y-%m-%d %H:%M:%S}",
                     _asked(m)] for m in found],
                   ["MODEL", "ENDPOINT", "SEEN", "FIRST SEEN", "LAST SEEN", "ASKED"])
    for u in unrecorded:
        warn(f"{u.seen} miss{'es were' if u.seen != 1 else ' was'} answered but not recorded "
             f"({u.reason}: {u.detail}; the last at {u.last_seen:%Y-%m-%d %H:%M:%S})")


def _engine(options: tuple[str, ...]) -> dict[str, Any]:
    """NAME=VALUE pairs, each VALUE read as TOML (256, true, "x") or else as text."""
    from batch.run.spec.errors import SpecError
    from batch.run.spec.settings import EngineOptions

    out: dict[str, Any] = {}
    for option in options:
        name, sep, value = option.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"{option!r}: expected NAME=VALUE", param_hint="--engine")
        try:
            out[name.strip()] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            out[name.strip()] = value
    try:
        EngineOptions.from_mapping(out)
    except SpecError as exc:
        raise click.BadParameter(str(exc), param_hint="--engine") from None
    return out


@misses.command("run")
@_MODEL
@click.option("--engine", "engine", multiple=True, metavar="NAME=VALUE",
              help="An [engine] option of the jobs, as vllm.LLM takes it (max_model_len=4096, "
                   "dtype=bfloat16, …); repeatable.")
@click.option("--ray", "ray_address", metavar="ADDRESS", envvar="ALMANAC_RAY_ADDRESS",
              help="Generate on a Ray cluster, as `almanac run --ray` does.")
@json_option
@pass_env
def run_misses(env: Env, model: str | None, engine: tuple[str, ...], ray_address: str | None,
               json_: bool) -> None:
    """Generate the misses: a batch job per model (`misses-<model>`, its files in the
    home's misses/), run as `almanac run` runs jobs. What a run answered is no longer a
    miss. Exit codes as `almanac run`'s: 0 ok, 1 error, 3 some rows failed, 75 a job
    locked, 130 / 143 stopped."""
    from batch.openai_api.misses import MissStore
    from batch.openai_api.misses_jobs import run_misses as run_each
    from batch.run.runner import Runner, configure_logging
    from batch.run.spec.ray_settings import RayAddress
    from batch.run.stopping import Stopped, catch_stops

    configure_logging()
    options = _engine(engine)
    ray = RayAddress.parse(ray_address) if ray_address else None
    results: list[dict[str, Any]] = []
    codes: list[int] = []
    stopped: Stopped | None = None
    with MissStore.open(env.home.predictions) as store, catch_stops():
        runner = Runner(env.catalog(), env.home.predictions, env.home.locks,
                        executor=_executor(ray))
        try:
            for job, outcome, answered in run_each(runner, store, env.home.misses,
                                                   model=model, engine=options):
                if isinstance(outcome, AlmanacError):
                    warn(f"{job.name}: {outcome}")
                    code = _job_failed(outcome)
                    results.append({"job": job.name, "misses": len(job.ids), "answered": 0,
                                    "status": "locked" if code == ExitCode.LOCKED else "error",
                                    "error": str(outcome)})
                    codes.append(code)
                    continue
                results.append({**outcome.to_json(), "misses": len(job.ids),
                                "answered": answered})
                codes.append(outcome.exit_code)
                if not json_:
                    click.echo(f"{_human(outcome)}; {answered} of {len(job.ids)} misses answered")
        except Stopped as stop:
            stopped = stop
            if stop.result is not None:
                results.append(stop.result.to_json())
        finally:
            if stopped is None:
                runner.close()
    if json_:
        emit_json(results)
    elif not results:
        warn("no misses to run")
    _end(stopped, codes)


@misses.command("clear")
@_MODEL
@pass_env
def clear(env: Env, model: str | None) -> None:
    """Forget the misses (of one model), and the count of those not recorded."""
    from batch.openai_api.misses import MISSES_FILE, MissStore

    if not (env.home.predictions / MISSES_FILE).exists():  # nothing recorded: nothing made
        gone = 0
    else:
        with MissStore.open(env.home.predictions) as store:
            gone = store.clear(model)
    warn(f"{gone} miss{'es' if gone != 1 else ''} cleared")

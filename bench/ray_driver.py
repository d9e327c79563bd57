"""The driver's share of a Ray run, alone: what it does per row without an engine.

A job on Ray is planned, tokenized, shipped, and its answers written, by one driver
process, whatever the number of replicas. This times the driver's own code on
pre-made answers, as blocks the shape of Ray Data LLM's: the outbox (tokenize every
prompt, build the Arrow rows the vLLM stage takes) and the write path
(`batch.run.executors.ray_requests.write_answers`: answer rows → records → the run's shard
writer → Parquet shards, fsync, SHA-256 and the index). No engine, no Ray: the rows/s
here is the most a driver can take in, whatever the cluster behind it.
"""

from __future__ import annotations

import random
import time
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa

from bench.machine import load_average

ANSWER_BLOCK_ROWS = 64  # Ray Data LLM hands back one block per batch: [ray] batch_size


class _Timed:
    """The run's shard writer as the runner wraps it, with the time spent in it."""

    def __init__(self, writer: Any) -> None:
        self.writer, self.seconds = writer, 0.0

    def add(self, records: list[Any]) -> None:
        began = time.perf_counter()
        for record in records:
            self.writer.add(record)
        self.seconds += time.perf_counter() - began


def _answers(shipped: list[Any], tokenizer: Any, max_tokens: int) -> list[pa.Table]:
    """What the vLLM stage would hand back: `max_tokens` generated token ids per row,
    their text, in blocks of ANSWER_BLOCK_ROWS rows."""
    rng = random.Random(0)
    vocab = tokenizer.vocab_size
    rows: dict[str, list[Any]] = {"rid": [], "generated_text": [], "generated_tokens": [],
                                  "num_generated_tokens": [], "logprobs": [],
                                  "__inference_error__": []}
    for rid in range(len(shipped)):
        tokens = [rng.randrange(3, vocab) for _ in range(max_tokens)]
        rows["rid"].append(rid)
        rows["generated_text"].append(tokenizer.decode(tokens, skip_special_tokens=True))
        rows["generated_tokens"].append(tokens)
        rows["num_generated_tokens"].append(len(tokens))
        rows["logprobs"].append(None)
        rows["__inference_error__"].append(None)
    schema = pa.schema([("rid", pa.int64()), ("generated_text", pa.string()),
                        ("generated_tokens", pa.list_(pa.int64())),
                        ("num_generated_tokens", pa.int64()), ("logprobs", pa.null()),
                        ("__inference_error__", pa.string())])
    table = pa.Table.from_pydict(rows, schema=schema)
    return [table.slice(i, ANSWER_BLOCK_ROWS)
            for i in range(0, table.num_rows, ANSWER_BLOCK_ROWS)]


def write_path(home: Path, job: Path, model: Path, model_name: str,
               max_tokens: int) -> dict[str, Any]:
    """Plan `job` (its rows all missing) on a fresh `home`, then time the outbox and the
    write path over pre-made answers; checks that every row landed in the index."""
    from batch.cache.store import PredictionStore, ShardWriter
    from batch.query import Predictions
    from batch.run.candidates import engine_groups, resolve_candidates
    from batch.run.executors.base import Share
    from batch.run.executors.ray_requests import PASSES, Outbox, load_tokenizer, write_answers
    from batch.run.plan import Target, make_plans
    from batch.run.records import RecordBuilder
    from batch.run.result import Phases, RunResult
    from batch.run.spec.job import load_spec
    from catalog.db import Catalog
    from catalog.localmodels import entry_from_directory
    from catalog.models import upsert_model
    from catalog.records import CandidateRun

    catalog = Catalog.at(home / "catalog.db")
    with catalog.sessions.begin() as s:
        upsert_model(s, entry_from_directory(model, name=model_name))
    spec = load_spec(job)
    store = PredictionStore(home / "predictions")
    load_start = load_average()
    try:
        with catalog.sessions() as s:
            candidates = resolve_candidates(s, spec.candidates, spec.path, store)
        (c,) = candidates
        began = time.perf_counter()
        plans = make_plans(spec, store, [Target(c.label, c.model.ref, c.model.revision,
                                                c.model.identity, c.adapter_ref,
                                                c.adapter_identity)],
                           route=lambda _: [0])
        plan_s = time.perf_counter() - began
        (plan,) = plans
        run_id = uuid.uuid4().hex
        store.set_candidates(spec.name, [c.info() for c in candidates])
        result = RunResult(spec.name, run_id, "running", {}, phases=Phases())
        shares = [Share(plan, RecordBuilder.of(plan, run_id), None,
                        CandidateRun(c.label, c.model.ref, c.model.revision))]
        target = engine_groups(candidates)[0].target
        tokenizer, endings = load_tokenizer(target)
        with ShardWriter(store, spec.name, run_id, spec.shard_rows, spec.row_group_rows,
                         spec.compression) as writer:
            out = _Timed(writer)
            outbox = Outbox(shares, tokenizer, target, str(model), PASSES[0])
            began = time.perf_counter()
            shipped = list(outbox.blocks(out, result))
            outbox_s = time.perf_counter() - began
            answers = _answers(outbox.shipped, tokenizer, max_tokens)
            work = [0]
            began = time.perf_counter()
            rows = sum(write_answers(block, outbox, endings, shares, out, result, work)
                       for block in answers)
            out.seconds = 0.0  # from here on only the last shard, timed as a whole
            mark = time.perf_counter()
            writer.flush()
            last_shard_s = time.perf_counter() - mark
            write_s = time.perf_counter() - began
        shards = len(writer.shards)
    finally:
        store.close()
        catalog.close()
    with Predictions.at(home / "predictions", spec.name) as p:
        indexed = len(p.get_many([f"p{i:07d}" for i in range(rows)]))
    if indexed != rows or result.generated != rows or result.failed:
        raise AssertionError(f"write path: {rows} rows written, {indexed} indexed, "
                             f"{result.generated} counted, {result.failed} failed")
    return {
        "rows": rows, "max_tokens": max_tokens, "answer_block_rows": ANSWER_BLOCK_ROWS,
        "shard_rows": spec.shard_rows, "shards": shards, "plan_s": round(plan_s, 3),
        "outbox_s": round(outbox_s, 3), "outbox_rows_per_s": round(rows / outbox_s),
        "shipped_blocks": len(shipped), "write_s": round(write_s, 3),
        "write_rows_per_s": round(rows / write_s), "last_shard_s": round(last_shard_s, 3),
        "record_s": round(result.phases.record_s, 3),
        "driver_rows_per_s": round(rows / (outbox_s + write_s)),
        "load_start": load_start, "load_end": load_average(),
    }


def keeps_up(write_rows_per_s: float, replica_rows_per_s: dict[str, float]) -> dict[str, Any]:
    """How many replicas of each throughput one driver's write path keeps fed."""
    return {name: {"replica_rows_per_s": round(rate, 1),
                   "replicas": int(write_rows_per_s // rate) if rate else None}
            for name, rate in replica_rows_per_s.items()}

"""A page of models as plain records, read with a handful of queries (one for the models,
one per kind of child row) instead of ORM objects and their lazy loads per row; and each
model's measured speed.

SQL over a DB-API connection (catalog.plain: a read-only sqlite3 connection, or the one
under an ORM session), so a command that only lists never loads SQLAlchemy. Each
statement takes the page's ids as one JSON array (SQLite's `json_each`): a page costs no
per-id parameters, and SQLite finds each statement in its cache. At a million models a
page of 50 reads in a few milliseconds."""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict
from typing import Any

from catalog.plain import reads, utc
from catalog.records import EvalRecord, ModelRecord, PerformanceRecord

# The models row's own facts, as ModelEntry names them.
SCALARS = (
    "repo_id", "revision", "name", "description", "architecture", "parameters",
    "context_length", "dtype", "license", "task", "base_model", "relation",
    "adapter_rank", "source", "local_path", "gated", "downloads", "likes", "card",
)
_TIMES = ("created_at", "updated_at", "refreshed_at")
_COLUMNS = ("id", "ref", *_TIMES, "curated", *SCALARS)
# The page's ids, from one JSON array parameter.
_IDS = "SELECT value FROM json_each(:ids)"
_MODELS = f"SELECT {', '.join(_COLUMNS)} FROM models WHERE id IN ({_IDS})"
_CHILDREN = {
    "languages": f"SELECT model_id, language FROM model_languages WHERE model_id IN ({_IDS})",
    "domains": f"SELECT model_id, domain FROM model_domains WHERE model_id IN ({_IDS})",
    "tags": f"SELECT model_id, tag FROM model_tags WHERE model_id IN ({_IDS})",
}
_EVALS = (f"SELECT model_id, benchmark, metric, value, source FROM evals "
          f"WHERE model_id IN ({_IDS}) ORDER BY id")


@reads
def records_for(conn: sqlite3.Connection, ids: list[int], *,
                scores: dict[int, float] | None = None,
                performance: bool = True) -> list[ModelRecord]:
    """The models with these ids, in this order, with languages, domains, tags, evals and
    (unless `performance=False`) measured speed, and `score` when given."""
    if not ids:
        return []
    page = {"ids": json.dumps(ids)}
    rows = {row[0]: row for row in conn.execute(_MODELS, page)}
    children: dict[str, dict[int, list[Any]]] = {}
    for name, sql in _CHILDREN.items():
        found: dict[int, list[Any]] = defaultdict(list)
        for model_id, value in conn.execute(sql, page):
            found[model_id].append(value)
        children[name] = found
    evals: dict[int, list[EvalRecord]] = defaultdict(list)
    for model_id, *fields in conn.execute(_EVALS, page):
        evals[model_id].append(EvalRecord(*fields))
    measured = performances(conn, ids) if performance else {}
    out = []
    for model_id in ids:
        row = rows.get(model_id)
        if row is None:  # removed between the listing and this read
            continue
        fields = dict(zip(_COLUMNS, row, strict=True))
        curated = fields.pop("curated")
        fields.update({name: utc(fields[name]) for name in _TIMES})
        fields["gated"] = bool(fields["gated"])
        out.append(ModelRecord(
            **fields,
            curated=json.loads(curated) if curated else [],
            languages=sorted(children["languages"].get(model_id, [])),
            domains=sorted(children["domains"].get(model_id, [])),
            tags=sorted(children["tags"].get(model_id, [])),
            evals=evals.get(model_id, []),
            performance=measured.get(model_id),
            score=(scores or {}).get(model_id),
        ))
    return out


# A run of one model measures it whole (runs.tokens_per_s); a run of several models has
# no such figure (a mix is no model's speed), so it measures each of its models by their
# candidates' rows: their output tokens over their share of engine time. SQLite fills the
# bare columns from the row that holds max().
_PERFORMANCES = f"""
SELECT model_id, tps, start, hw, max(at), count(*) FROM (
    SELECT model_id, tokens_per_s AS tps, engine_start_s AS start, hardware AS hw,
           started_at AS at
    FROM runs
    WHERE model_id IN ({_IDS}) AND generated > 0 AND tokens_per_s IS NOT NULL
    UNION ALL
    SELECT run_candidates.model_id, sum(run_candidates.output_tokens)
           / sum(run_candidates.generation_s), max(run_candidates.engine_start_s),
           runs.hardware, runs.started_at
    FROM run_candidates JOIN runs ON runs.id = run_candidates.run_id
    WHERE run_candidates.model_id IN ({_IDS}) AND runs.tokens_per_s IS NULL
      AND run_candidates.generated > 0 AND run_candidates.generation_s > 0
    GROUP BY runs.id, run_candidates.model_id
) GROUP BY model_id"""


@reads
def performances(conn: sqlite3.Connection, model_ids: list[int]) -> dict[int, PerformanceRecord]:
    """Each model's latest generating run, which is what users compare, and how many
    there were."""
    return {
        model_id: PerformanceRecord(runs=n, tokens_per_s=tps, engine_start_s=start,
                                    hardware=hw, last_run_at=utc(at))
        for model_id, tps, start, hw, at, n
        in conn.execute(_PERFORMANCES, {"ids": json.dumps(model_ids)})
    }

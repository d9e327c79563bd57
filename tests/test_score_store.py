"""predictions/scores.db (contract C2) and compare's arithmetic over plain records."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from batch.score.compare import CandidateFacts, build_comparison
from batch.score.stats import mean_interval
from batch.score.store import Score, ScoreStore, ScoreStoreError, score_of, scores_for
from catalog.records import CandidateRun


def _score(candidate: str, input_id: str, value: float | None, error: str | None = None) -> Score:
    return Score(candidate, input_id, key=f"k-{candidate}-{input_id}", basis=f"b-{input_id}",
                 value=value, error=error)


def test_scores_round_trip_and_read_by_candidate(tmp_path: Path) -> None:
    with ScoreStore.open(tmp_path) as store:
        rows = [_score("a", "1", 1.0), _score("a", "2", 0.0), _score("b", "1", None, "template error")]
        store.save("job", "scorer1", "exact", rows, [(r.candidate, r.input_id) for r in rows])
    assert scores_for(tmp_path, "job") == {("a", "1"): 1.0, ("a", "2"): 0.0, ("b", "1"): None}
    assert scores_for(tmp_path, "job", candidate="a") == {("a", "1"): 1.0, ("a", "2"): 0.0}
    assert score_of(tmp_path, "job", "a", "1") == 1.0
    assert score_of(tmp_path, "job", "b", "1") is None
    assert scores_for(tmp_path, "other") == {}
    reader = ScoreStore.open_readonly(tmp_path)
    assert reader is not None
    with reader:
        assert reader.values("job") == {"a": [1.0, 0.0]}
        assert reader.error_counts("job") == {"b": 1}
        assert [s.error for s in reader.scores("job", "b")] == ["template error"]
        scoring = reader.scoring("job")
        assert scoring is not None and (scoring.scorer, scoring.metric) == ("scorer1", "exact")
        assert scoring.scored_at <= datetime.now(UTC)
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            reader.db.execute("DELETE FROM scores")


def test_a_new_scoring_keeps_unchanged_rows_and_drops_those_no_longer_current(tmp_path: Path) -> None:
    with ScoreStore.open(tmp_path) as store:
        store.save("job", "s1", "exact", [_score("a", str(i), 1.0) for i in range(4)],
                   [("a", str(i)) for i in range(4)])
        store.save("other", "s1", "exact", [_score("a", "0", 0.0)], [("a", "0")])
        assert store.bases("job")[("a", "2")] == ("s1", "b-2")
        # Input 3 left the file; input 1 was rescored; 0 and 2 kept as they were.
        store.save("job", "s1", "exact", [_score("a", "1", 0.0)], [("a", "0"), ("a", "1"), ("a", "2")])
        assert store.scores_for("job") == {("a", "0"): 1.0, ("a", "1"): 0.0, ("a", "2"): 1.0}
        assert store.scores_for("other") == {("a", "0"): 0.0}


def test_no_store_yet_reads_as_empty_and_a_damaged_one_says_so(tmp_path: Path) -> None:
    assert ScoreStore.open_readonly(tmp_path) is None
    assert score_of(tmp_path, "job", "a", "1") is None
    (tmp_path / "scores.db").write_bytes(b"not a database at all" * 100)
    with pytest.raises(ScoreStoreError, match="scores.db: it is damaged"):
        ScoreStore.open_readonly(tmp_path)
    with pytest.raises(ScoreStoreError, match="scores.db: it is damaged"):
        ScoreStore.open(tmp_path)


def _run(label: str, model: str, *, generated: int, seconds: float, tokens: int,
         price: float | None = None, start: float | None = 20.0, adapter: str | None = None) -> CandidateRun:
    return CandidateRun(label=label, model_ref=model, adapter=adapter, inputs=generated,
                        generated=generated, output_tokens=tokens, generation_s=seconds,
                        engine_start_s=start, usd_per_hour=price)


def test_compare_arithmetic_over_plain_records() -> None:
    candidates = [
        CandidateFacts("big", "org/big", rows=100, failures=2),
        CandidateFacts("small", "org/small", rows=100, failures=0),
        CandidateFacts("small+lora", "org/small", adapter="acme/lora", rows=100),
        CandidateFacts("unscored", "org/x", rows=100),
    ]
    values = {"big": [1.0] * 90 + [0.0] * 10, "small": [1.0] * 60 + [0.0] * 40,
              "small+lora": [1.0] * 85 + [0.0] * 15}
    runs = [  # newest first; "small" ran twice, the second time partly priced differently
        _run("small", "org/small", generated=50, seconds=5.0, tokens=400, price=2.0, start=None),
        _run("small", "org/small", generated=50, seconds=15.0, tokens=600, price=1.0),
        _run("big", "org/big", generated=100, seconds=100.0, tokens=1000, price=1.0),
        _run("small+lora", "org/small", adapter="acme/lora", generated=100, seconds=10.0, tokens=900),
        _run("gone", "org/gone", generated=100, seconds=1.0, tokens=10, price=1.0),
    ]
    params = {"org/big": 7_000_000_000, "org/small": 1_000_000_000}
    table = build_comparison(candidates, values, {"big": 3}, runs, params, "exact")
    assert [e.label for e in table] == ["big", "small+lora", "small", "unscored"]
    big, lora, small, unscored = table
    assert (big.n, big.errors, big.failures, big.rows) == (100, 3, 2, 100)
    assert big.score == pytest.approx(0.9)
    assert (big.ci_low, big.ci_high) == (mean_interval(values["big"]).low, mean_interval(values["big"]).high)
    assert big.tokens_per_s == pytest.approx(10.0) and big.engine_s == 100.0
    assert big.cost_per_1k == pytest.approx(1.0 * 100 / 3600 / 100 * 1000)
    # Two runs at two prices: what they cost, per row generated.
    assert small.generated == 100 and small.engine_s == 20.0
    assert small.tokens_per_s == pytest.approx(1000 / 20)
    assert small.cost_per_1k == pytest.approx((5 * 2.0 + 15 * 1.0) / 3600 / 100 * 1000)
    assert small.usd_per_hour == pytest.approx(25 / 20)
    assert small.engine_start_s == 20.0  # the newest run that started an engine
    assert small.parameters == 1_000_000_000
    # No price recorded: unknown, not zero; and so off the front.
    assert lora.cost_per_1k is None and lora.usd_per_hour is None and lora.pareto is None
    assert lora.tokens_per_s == pytest.approx(90.0)
    assert unscored.score is None and unscored.n == 0 and unscored.cost_per_1k is None
    assert unscored.parameters is None and unscored.generated == 0 and unscored.engine_s is None
    assert (big.pareto, small.pareto) == (True, True)  # better, or cheaper

    flagged = build_comparison(candidates, values, {}, runs, params, "exact", usd_per_hour=3.6)
    by_label = {e.label: e for e in flagged}
    assert by_label["small+lora"].cost_per_1k == pytest.approx(3.6 * 10 / 3600 / 100 * 1000)
    assert by_label["small"].cost_per_1k == pytest.approx(3.6 * 20 / 3600 / 100 * 1000)
    assert by_label["small+lora"].pareto is True and by_label["small"].pareto is False
    json_entry = by_label["big"].to_json()
    for field in ("model", "adapter", "label", "n", "score", "ci_low", "ci_high", "tokens_per_s",
                  "cost_per_1k"):
        assert field in json_entry

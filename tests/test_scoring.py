"""`almanac score` and `almanac compare` over a cache written without an engine: scores
recomputed from the Parquet rows agree with compare, rescoring computes only what
changed and never imports vLLM, bad input names its field, nothing cached is lost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import tomli_w

from batch.score.stats import mean_interval
from tests.engine_support import almanac
from tests.score_support import BIG, FRUITS, JOB, LORA, SMALL, build_scored_home

REFERENCES = dict(FRUITS)


@pytest.fixture
def job_file(home: Path) -> Path:
    return build_scored_home(home)


def _ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, proc.stderr
    return proc


def _parquet_scores(home: Path) -> dict[str, list[float]]:
    """Each candidate's exact-match values, from the shards alone: the newest record of
    every (candidate, input), against the family in the input file."""
    latest: dict[tuple[str, str], dict] = {}
    rows = pq.read_table(home / "predictions" / JOB).to_pylist()
    for row in sorted(rows, key=lambda r: r["created_at"]):
        latest[(row["candidate"], row["input_id"])] = row
    values: dict[str, list[float]] = defaultdict(list)
    for (candidate, input_id), row in sorted(latest.items()):
        if input_id not in REFERENCES:
            continue  # its row has no family: not scored
        right = row["error"] is None and row["output"].strip() == REFERENCES[input_id]
        values[candidate].append(float(right))
    return values


def _shards(home: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((home / "predictions" / JOB).glob("*.parquet"))}


def test_compare_agrees_with_scores_recomputed_from_the_parquet_rows(home: Path, job_file: Path) -> None:
    before = _shards(home)
    scored = json.loads(_ok(almanac(home, "score", str(job_file), "--json")).stdout)
    assert (scored["computed"], scored["kept"], scored["errors"]) == (39, 0, 3)
    entries = json.loads(_ok(almanac(home, "compare", JOB, "--json")).stdout)
    expected = _parquet_scores(home)
    assert {e["label"] for e in entries} == set(expected) == {"big", "small", "small+lora"}
    for e in entries:
        values = expected[e["label"]]
        interval = mean_interval(values)
        assert e["n"] == len(values) == 12
        assert e["score"] == pytest.approx(sum(values) / len(values), abs=1e-12)
        assert (e["ci_low"], e["ci_high"]) == pytest.approx((interval.low, interval.high), abs=1e-12)
        assert e["rows"] == 13 and e["errors"] == 1  # "mystery" has no reference
        assert e["metric"] == "exact"
    by_label = {e["label"]: e for e in entries}
    assert [e["label"] for e in entries] == ["big", "small+lora", "small"]  # best first
    assert by_label["big"]["failures"] == 1 and by_label["big"]["model"] == BIG
    assert (by_label["small+lora"]["model"], by_label["small+lora"]["adapter"]) == (SMALL, LORA)
    assert by_label["small"]["parameters"] == 1_100_000_000
    # Output tokens per engine-second over both runs that generated; the price only the
    # first run stated: where a generating run has none, the cost stays unknown.
    assert by_label["big"]["tokens_per_s"] == pytest.approx((24 + 22) / (6.0 + 5.5))
    assert by_label["big"]["cost_per_1k"] is None and by_label["big"]["pareto"] is None
    priced = json.loads(_ok(almanac(home, "compare", JOB, "--json", "--usd-per-hour", "3.6")).stdout)
    cost = {e["label"]: e["cost_per_1k"] for e in priced}
    assert cost["big"] == pytest.approx(3.6 * 11.5 / 3600 / 23 * 1000)
    assert cost["small"] == pytest.approx(3.6 * 6.0 / 3600 / 24 * 1000)
    assert cost["small+lora"] == pytest.approx(3.6 * 2.0 / 3600 / 12 * 1000)
    assert {e["label"]: e["pareto"] for e in priced} == {"big": True, "small+lora": True, "small": False}
    assert _shards(home) == before  # scoring wrote nothing into the cache


def test_a_failing_reference_is_that_rows_error_and_a_failed_prediction_scores_zero(
        home: Path, job_file: Path) -> None:
    from batch.score.store import ScoreStore

    _ok(almanac(home, "score", str(job_file)))
    store = ScoreStore.open_readonly(home / "predictions")
    assert store is not None
    with store:
        rows = {(s.candidate, s.input_id): s for s in store.scores(JOB)}
    mystery = rows[("big", "mystery")]
    assert mystery.value is None and mystery.error == "reference: template error: 'family' is undefined"
    tomato = rows[("big", "tomato")]
    assert tomato.value == 0.0 and tomato.error.startswith("prediction failed: prompt is 300 tokens")
    assert rows[("small+lora", "grape")].value == 0.0  # exact: " Berry" is not "berry"


def test_a_reference_past_the_sandboxs_bounds_is_that_rows_error(home: Path, job_file: Path) -> None:
    from batch.score.store import ScoreStore

    data = tomllib.loads(job_file.read_text())
    data["score"]["reference"] = "{{ 'x' * 100000000 if fruit == 'plum' else family }}"
    job_file.write_text(tomli_w.dumps(data))
    report = json.loads(_ok(almanac(home, "score", str(job_file), "--json")).stdout)
    with ScoreStore.open_readonly(home / "predictions") as store:
        rows = {(s.candidate, s.input_id): s for s in store.scores(JOB)}
    plum = rows[("big", "plum")]
    assert plum.value is None and plum.error.startswith(
        "reference: template error: * would make a value of 100,000,000 characters")
    assert rows[("big", "cherry")].value == 1.0  # the other rows are scored as before
    assert report["errors"] == sum(1 for r in rows.values() if r.value is None)


def test_rescoring_computes_only_what_changed_and_never_imports_vllm(home: Path, job_file: Path) -> None:
    probe = """
import json, sys
from almanac.cli import cli
codes = []
for args in json.loads(sys.argv[1]):
    try:
        cli.main(args, prog_name="almanac", standalone_mode=False)
        codes.append(0)
    except SystemExit as exc:
        codes.append(exc.code)
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"vllm", "torch", "transformers"})
print(json.dumps({"codes": codes, "heavy": heavy}), file=sys.stderr)
"""
    first = json.loads(_ok(almanac(home, "score", str(job_file), "--json")).stdout)
    assert first["computed"] == 39
    again = json.loads(_ok(almanac(home, "score", str(job_file), "--json")).stdout)
    assert (again["computed"], again["kept"]) == (0, 39)
    # A new metric and reference: every score recomputed from the cache, in a fresh
    # interpreter that never loads the engine.
    data = {**tomllib.loads(job_file.read_text()),
            "score": {"metric": "normalized", "reference": "{{ family | upper }}"}}
    job_file.write_text(tomli_w.dumps(data))
    env = {**os.environ, "ALMANAC_HOME": str(home)}
    proc = subprocess.run([sys.executable, "-c", probe, json.dumps([["score", str(job_file), "--json"]])],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stderr.strip().splitlines()[-1])
    assert report == {"codes": [0], "heavy": []}
    rescored = json.loads(proc.stdout)
    assert (rescored["computed"], rescored["kept"], rescored["metric"]) == (39, 0, "normalized")
    small_lora = next(c for c in rescored["candidates"] if c["label"] == "small+lora")
    assert small_lora["score"] == pytest.approx(11 / 12)  # " Berry" now counts


def test_each_candidates_score_is_a_measured_eval_of_its_model(home: Path, job_file: Path) -> None:
    from catalog.db import Catalog
    from catalog.evals import measured_for_task

    _ok(almanac(home, "score", str(job_file)))
    catalog = Catalog.at(home / "catalog.db")
    with catalog.sessions() as s:
        board = measured_for_task(s, JOB, "exact")
    catalog.close()
    got = [(m.model_ref, m.adapter, m.label, m.n, m.run_id, m.hardware) for m in board]
    assert got == [(BIG, "", "big", 12, "run-two", "Test CPU x2"),
                   (SMALL, LORA, "small+lora", 12, "run-two", "Test CPU x2"),
                   (SMALL, "", "small", 12, "run-two", "Test CPU x2")]
    assert board[0].value == pytest.approx(11 / 12)
    assert board[0].ci_low <= board[0].value <= board[0].ci_high


@pytest.mark.parametrize("command", ["score", "run"])
def test_an_unknown_metric_exits_2_naming_the_field(home: Path, job_file: Path, command: str) -> None:
    data = {**tomllib.loads(job_file.read_text()),
            "score": {"metric": "bleu", "reference": "{{ family }}"}}
    job_file.write_text(tomli_w.dumps(data))
    before = _shards(home)
    proc = almanac(home, command, str(job_file))
    assert proc.returncode == 2, proc.stderr
    assert "score.metric: 'bleu' is not one of" in proc.stderr
    assert _shards(home) == before


def test_scoring_a_job_without_a_score_table_is_a_usage_error(home: Path, job_file: Path) -> None:
    data = tomllib.loads(job_file.read_text())
    del data["score"]
    job_file.write_text(tomli_w.dumps(data))
    proc = almanac(home, "score", str(job_file))
    assert proc.returncode == 2 and "no [score] table" in proc.stderr


def test_compare_prints_the_table_the_front_and_a_chart(home: Path, job_file: Path) -> None:
    _ok(almanac(home, "score", str(job_file)))
    proc = _ok(almanac(home, "compare", JOB, "--usd-per-hour", "2", "--plot"))
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:3] == ["CANDIDATE", "MODEL", "ADAPTER"]
    assert lines[1].startswith("*") and lines[1].split()[1] == "big"
    assert "USD per 1,000 rows" in proc.stdout  # the chart's axis
    assert "* on the quality/cost Pareto front" in proc.stderr
    unpriced = _ok(almanac(home, "compare", JOB))
    # Each candidate generated in a run that stated no price: unknown, never invented.
    assert "cost unknown: state a price" in unpriced.stderr
    assert _ok(almanac(home, "compare", JOB, "--json", "--plot")).stdout.lstrip().startswith("[")


def test_comparing_an_unknown_job_says_so(home: Path, job_file: Path) -> None:
    proc = almanac(home, "compare", "no-such-job")
    assert proc.returncode == 1 and "no cached predictions for job 'no-such-job'" in proc.stderr


def test_a_judge_not_in_the_catalog_fails_the_spec_naming_the_field(home: Path, job_file: Path) -> None:
    data = {**tomllib.loads(job_file.read_text()),
            "score": {"metric": "judge", "judge": {"model": "nobody/judge", "template": "{{ output }}",
                                                   "choice": {"yes": 1, "no": 0}}}}
    job_file.write_text(tomli_w.dumps(data))
    proc = almanac(home, "score", str(job_file))
    assert proc.returncode == 2
    assert "score.judge.model: no model 'nobody/judge' in the catalog" in proc.stderr


def test_compare_says_when_predictions_were_made_on_a_replaced_revision(home: Path, job_file: Path) -> None:
    from catalog.db import Catalog
    from catalog.models import upsert_model
    from catalog.records import ModelEntry

    catalog = Catalog.at(home / "catalog.db")
    with catalog.sessions.begin() as s:
        upsert_model(s, ModelEntry(ref=BIG, name="Big fruit model", source="hub", repo_id=BIG,
                                   revision="rev-newer", parameters=7_240_000_000))
    catalog.close()
    entries = {e["label"]: e for e in json.loads(_ok(almanac(home, "compare", JOB, "--json")).stdout)}
    assert (entries["big"]["revision_current"], entries["big"]["current_revision"]) == (False, "rev-newer")
    assert entries["small"]["revision_current"] is None  # the catalog knows no revision of it
    proc = _ok(almanac(home, "compare", JOB))
    assert f"big: predictions made on {BIG}@rev-big; the catalog's current revision is rev-newer" in proc.stderr


def test_a_reference_macro_calling_itself_is_that_rows_error_not_a_traceback(
        home: Path, job_file: Path) -> None:
    from batch.score.store import ScoreStore

    data = tomllib.loads(job_file.read_text())
    data["score"]["reference"] = ("{% macro f(x) %}{{ f(x) }}{% endmacro %}"
                                  "{{ f(1) if fruit == 'plum' else family }}")
    job_file.write_text(tomli_w.dumps(data))
    proc = _ok(almanac(home, "score", str(job_file), "--json"))
    assert "Traceback" not in proc.stderr and "RecursionError" not in proc.stderr
    with ScoreStore.open_readonly(home / "predictions") as store:
        rows = {(s.candidate, s.input_id): s for s in store.scores(JOB)}
    plum = rows[("big", "plum")]
    assert plum.value is None and "recursion too deep" in plum.error
    assert rows[("big", "cherry")].value == 1.0


def test_numbers_that_are_not_finite_are_refused_as_a_price_or_a_judges_choice(
        home: Path, job_file: Path) -> None:
    from click.testing import CliRunner

    from almanac.cli import cli

    for bad in ("nan", "inf", "-inf", "0", "1e9"):
        result = CliRunner().invoke(cli, ["compare", JOB, "--usd-per-hour", bad])
        assert result.exit_code == 2, (bad, result.output)
        assert "--usd-per-hour" in result.output and "Traceback" not in result.output
    original = tomllib.loads(job_file.read_text())
    for change, field in [
        ({"score": {"metric": "judge", "judge": {"model": BIG, "template": "{{ output }}",
                                                 "choice": {"yes": float("nan"), "no": 0.0}}}},
         "score.judge.choice.yes: nan"),
        ({"cost": {"usd_per_hour": float("inf")}}, "cost.usd_per_hour: inf"),
    ]:
        job_file.write_text(tomli_w.dumps({**original, **change}))
        result = CliRunner().invoke(cli, ["score", str(job_file)])
        assert result.exit_code == 2, result.output
        assert f"{field} is not a finite number" in result.output


def _strict(text: str) -> object:
    """JSON as a strict reader takes it: no NaN, Infinity or -Infinity."""
    def refuse(word: str) -> None:
        raise AssertionError(f"not JSON: {word}")

    return json.loads(text, parse_constant=refuse)


def test_compare_never_writes_nan_or_infinity_as_json(tmp_path: Path) -> None:
    """A run recorded with a price of inf (as older versions let a job state) gives an
    infinite cost: JSON says null, on the command line and over HTTP."""
    from click.testing import CliRunner

    from almanac.cli import cli
    from tests.score_support import score_home
    from tests.test_server import LiveServer

    root = tmp_path / "priced"
    score_home(root, build_scored_home(root, second_price=float("inf")))
    result = CliRunner().invoke(cli, ["--home", str(root), "compare", JOB, "--json"])
    assert result.exit_code == 0, result.output
    entries = {e["label"]: e for e in _strict(result.stdout)}
    assert entries["small+lora"]["cost_per_1k"] is None  # generated in the inf-priced run only
    server = LiveServer(root)
    try:
        import httpx

        resp = httpx.get(f"{server.url}/jobs/{JOB}/compare", timeout=30)
    finally:
        server.close()
    assert resp.status_code == 200
    assert {e["label"]: e["cost_per_1k"] for e in _strict(resp.text)} == {
        label: e["cost_per_1k"] for label, e in entries.items()}

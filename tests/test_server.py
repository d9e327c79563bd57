"""`almanac serve`: a real uvicorn server on a loopback port, called over HTTP."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from almanac.server import MAX_BATCH, MAX_BODY, server_config
from tests.cache_support import key_for, record, write


class LiveServer:
    """uvicorn in a thread, on a socket bound before it starts: requests queue in the
    backlog until it serves, so nobody waits on a timer."""

    def __init__(self, home: Path) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(server_config(home))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()


def _fill(home: Path) -> None:
    from catalog.db import Catalog
    from catalog.seed import load_seed

    catalog = Catalog.at(home / "catalog.db")
    with catalog.sessions.begin() as s:
        load_seed(s)
    catalog.close()
    rows = [record(f"in-{i:03d}", output=f"drupe {i}", error="too long" if i % 10 == 9 else None)
            for i in range(60)]
    rows.append(record("with/slash", output="slashed"))
    write(home / "predictions", rows, shard_rows=25)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    home = tmp_path_factory.mktemp("served")
    _fill(home)
    server = LiveServer(home)
    yield server.url, home
    server.close()


@pytest.fixture
def client(served: tuple[str, Path]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served[0], timeout=30) as c:
        yield c


def _is_error(resp: httpx.Response, status: int) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/json"
    body = resp.json()
    assert set(body) == {"error", "message", "details"} and "Traceback" not in resp.text
    return body


# -- endpoints -----------------------------------------------------------------------------------


def test_health_and_openapi(client: httpx.Client) -> None:
    assert client.get("/health").json()["status"] == "ok"
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/health", "/models", "/models/{ref}", "/jobs", "/jobs/{job}", "/runs",
            "/jobs/{job}/predictions/{input_id}", "/jobs/{job}/lookup", "/keys/{key}"} <= set(paths)
    writes = [(p, m) for p, ops in paths.items() for m in ops if m in {"put", "patch", "delete"}]
    assert writes == []
    assert set(paths["/jobs/{job}/lookup"]) == {"post"}  # a batch read: 1,000 ids fit no URL


def test_models_take_the_filters_of_models_list(client: httpx.Client, served: tuple[str, Path]) -> None:
    from catalog.db import Catalog
    from catalog.search import ModelFilter, count_models, list_models

    page = client.get("/models", params={"domain": "code", "limit": 5}).json()
    catalog = Catalog.at(served[1] / "catalog.db")
    with catalog.sessions() as s:
        f = ModelFilter(domains=["code"], limit=5)
        expected = [m.ref for m in list_models(s, f)]
        total = count_models(s, f)
    catalog.close()
    assert [m["ref"] for m in page["items"]] == expected and page["total"] == total > 0

    polish = client.get("/models", params=[("language", "pl"), ("max_params", "8B")]).json()["items"]
    assert polish and all("pl" in m["languages"] for m in polish)

    assert _is_error(client.get("/models", params={"domain": "astrology"}), 400)["error"] == "bad_request"
    _is_error(client.get("/models", params={"min_params": "lots"}), 400)
    # The filter parser of `almanac models list`: the message names the query parameter.
    assert _is_error(client.get("/models", params={"fits": "a lot"}), 400)["message"].startswith("fits: ")
    _is_error(client.get("/models", params={"limit": 0}), 422)
    _is_error(client.get("/models", params={"limit": 10_000}), 422)
    # Sorts are checked by the same parser (score:JOB is open-ended): 400 naming the field.
    assert _is_error(client.get("/models", params={"sort": "random"}), 400)["message"].startswith("sort: ")


def test_one_model_by_a_ref_with_a_slash(client: httpx.Client) -> None:
    ref = client.get("/models", params={"language": "pl", "limit": 1}).json()["items"][0]["ref"]
    assert "/" in ref
    assert client.get(f"/models/{ref}").json()["ref"] == ref
    _is_error(client.get("/models/nobody/nothing"), 404)


def test_jobs_runs_and_predictions(client: httpx.Client) -> None:
    (job,) = client.get("/jobs").json()
    assert (job["job"], job["rows"], job["failed"], job["shards"]) == ("fruits", 61, 6, 3)
    assert client.get("/jobs/fruits").json() == job
    _is_error(client.get("/jobs/nope"), 404)
    _is_error(client.get("/jobs/bad%20name"), 422)
    assert client.get("/runs").json() == []  # no runs recorded in this catalog

    one = client.get("/jobs/fruits/predictions/in-007").json()
    assert (one["input_id"], one["output"], one["key"]) == ("in-007", "drupe 7", key_for("in-007"))
    assert client.get("/jobs/fruits/predictions/with/slash").json()["output"] == "slashed"
    assert _is_error(client.get("/jobs/fruits/predictions/ghost"), 404)["message"].endswith("'ghost'")
    _is_error(client.get("/jobs/ghost/predictions/in-007"), 404)

    page = client.get("/jobs/fruits/predictions", params={"failed": True, "limit": 2, "offset": 1}).json()
    assert (page["total"], [r["input_id"] for r in page["items"]]) == (6, ["in-019", "in-029"])
    assert client.get("/jobs/fruits/predictions", params={"contains": "DRUPE 5"}).json()["total"] == 10
    _is_error(client.get("/jobs/fruits/predictions", params={"limit": 501}), 422)

    assert client.get(f"/keys/{key_for('in-011')}").json()["input_id"] == "in-011"
    assert client.get(f"/keys/{key_for('in-011')}", params={"job": "fruits"}).status_code == 200
    _is_error(client.get(f"/keys/{'0' * 64}"), 404)
    # A key's beginning, as the CLI's --key takes it (8 characters at least).
    assert client.get(f"/keys/{key_for('in-011')[:12]}").json()["input_id"] == "in-011"
    _is_error(client.get(f"/keys/{key_for('in-011')[:7]}"), 404)


def test_job_names_are_checked_against_the_job_schemas_pattern(client: httpx.Client) -> None:
    import schemas
    from almanac.server.limits import JOB_PATTERN

    assert schemas.load("job")["properties"]["name"]["pattern"] == JOB_PATTERN
    assert schemas.is_job_name("fruits") and schemas.is_job_name("a" * 128)
    for bad in ("a" * 129, "-fruits", "fruits\n", "fr/uits", ""):
        assert not schemas.is_job_name(bad), bad
    _is_error(client.get(f"/jobs/{'a' * 129}"), 422)
    _is_error(client.get("/runs", params={"job": "-fruits"}), 422)
    assert client.get("/runs", params={"job": "a" * 128}).json() == []


def test_batch_lookup_is_bounded(client: httpx.Client) -> None:
    ids = [f"in-{i:03d}" for i in range(0, 60, 3)] + ["ghost", "in-000"]
    posted = client.post("/jobs/fruits/lookup", json={"ids": ids}).json()
    assert sorted(posted["found"]) == sorted(set(ids) - {"ghost"}) and posted["missing"] == ["ghost"]

    _is_error(client.post("/jobs/fruits/lookup", json={"ids": ["x"] * (MAX_BATCH + 1)}), 422)
    _is_error(client.post("/jobs/fruits/lookup", json={"ids": ["x" * 513]}), 422)
    _is_error(client.post("/jobs/fruits/lookup", content=b"{not json",
                          headers={"content-type": "application/json"}), 422)
    huge = b'{"ids": ["' + b"x" * (MAX_BODY + 1) + b'"]}'
    assert _is_error(client.post("/jobs/fruits/lookup", content=huge,
                                 headers={"content-type": "application/json"}), 413)["error"] == "too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
        yield b'{"ids": ["'
        for _ in range(MAX_BODY // 65536 + 2):
            yield b"x" * 65536
        yield b'"]}'

    _is_error(client.post("/jobs/fruits/lookup", content=chunks(),
                          headers={"content-type": "application/json"}), 413)


def test_nothing_can_be_written(client: httpx.Client) -> None:
    for method in ("PUT", "PATCH", "DELETE"):
        _is_error(client.request(method, "/jobs/fruits/predictions/in-001"), 405)
    _is_error(client.post("/jobs/fruits/predictions/in-001", json={}), 405)
    _is_error(client.get("/no/such/thing"), 404)


def test_the_server_sees_shards_a_run_writes_while_it_answers(tmp_path: Path) -> None:
    home = tmp_path / "live"
    write(home / "predictions", [record("first")])
    server = LiveServer(home)
    done = threading.Event()
    landed: list[str] = []

    def run() -> None:
        from batch.cache.store import PredictionStore, ShardWriter

        store = PredictionStore(home / "predictions")
        try:
            with ShardWriter(store, "fruits", "f" * 32, shard_rows=10, row_group_rows=4) as w:
                for i in range(200):
                    w.add(record(f"new{i:03d}"))
                    if (i + 1) % 10 == 0:
                        landed.extend(f"new{j:03d}" for j in range(i - 9, i + 1))
        finally:
            store.close()
            done.set()

    try:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            writer = threading.Thread(target=run)
            writer.start()
            answered = 0
            while not done.is_set():
                assert c.get("/jobs/fruits/predictions/first").status_code == 200
                if visible := list(landed):
                    assert c.get(f"/jobs/fruits/predictions/{visible[-1]}").status_code == 200
                answered += 1
            writer.join()
            ids = [f"new{i:03d}" for i in range(200)]
            assert c.post("/jobs/fruits/lookup", json={"ids": ids}).json()["missing"] == []
            assert answered > 0
    finally:
        server.close()


def test_a_server_started_before_the_first_run_sees_it(tmp_path: Path) -> None:
    home = tmp_path / "fresh"
    server = LiveServer(home)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            assert c.get("/jobs").json() == []
            _is_error(c.get("/models"), 503)  # no catalog here: a lookup-only host
            write(home / "predictions", [record("late")])
            assert c.get("/jobs/fruits/predictions/late").json()["input_id"] == "late"
    finally:
        server.close()


def test_almanac_serve_binds_loopback_by_default(home: Path) -> None:
    write(home / "predictions", [record("plum")])
    env = {**os.environ, "ALMANAC_HOME": str(home)}
    proc = subprocess.Popen([sys.executable, "-m", "almanac", "serve", "--port", "0"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        url = None
        for line in proc.stderr:  # uvicorn logs where it listens once it does
            if m := re.search(r"running on (http://\S+)", line):
                url = m.group(1)
                break
        assert url is not None and url.startswith("http://127.0.0.1:")
        assert httpx.get(f"{url}/jobs/fruits/predictions/plum", timeout=30).json()["output"] == "drupe"
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert out == ""  # stdout is data; the server has none


# -- fuzzing the schema --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api_schema(served: tuple[str, Path]) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{served[0]}/openapi.json")


fuzz = schemathesis.pytest.from_fixture("api_schema")


@fuzz.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_fuzzed_requests_get_no_5xx_and_conform_to_the_schema(case: schemathesis.Case) -> None:
    case.call_and_validate(checks=[not_a_server_error, status_code_conformance,
                                   content_type_conformance, response_schema_conformance])

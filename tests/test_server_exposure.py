"""`almanac serve` fit to expose: a bearer token off loopback (401 without it), the Host
check against DNS rebinding on loopback, a deadline for request heads, HEAD wherever GET
is, no home paths in error bodies, a reference page that needs no network, exit codes a
service manager can read. Real uvicorn servers on 127.0.0.1, real processes."""

from __future__ import annotations

import os
import re
import signal
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

from almanac.server import server_config
from tests.cache_support import record, write

TOKEN = "s3cret-token"


class Served:
    """uvicorn in a thread on a socket bound before it starts (as tests/test_server.py)."""

    def __init__(self, home: Path, **options: object) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(server_config(home, **options))  # type: ignore[arg-type]
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with an (empty) catalog and some predictions."""
    from catalog.db import open_catalog

    home = tmp_path_factory.mktemp("exposed")
    open_catalog(home / "catalog.db").close()
    write(home / "predictions", [record(f"in-{i:03d}", output=f"drupe {i}") for i in range(20)])
    return home


@pytest.fixture(scope="module")
def guarded(filled: Path) -> Iterator[Served]:
    server = Served(filled, token=TOKEN, header_timeout=0.5)
    yield server
    server.close()


def _error(resp: httpx.Response, status: int) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert set(body) == {"error", "message", "details"}
    return body


# -- the token -----------------------------------------------------------------------------------


def test_with_a_token_requests_without_it_get_401(guarded: Served) -> None:
    with httpx.Client(base_url=guarded.url, timeout=30) as c:
        for path in ("/jobs", "/models", "/jobs/fruits/predictions/in-001", "/no/such/path"):
            resp = c.get(path)
            assert _error(resp, 401)["error"] == "unauthorized"
            assert resp.headers["www-authenticate"].startswith("Bearer")
        _error(c.get("/jobs", headers={"Authorization": "Bearer wrong"}), 401)
        _error(c.get("/jobs", headers={"Authorization": TOKEN}), 401)  # not as a bearer token
        _error(c.post("/jobs/fruits/lookup", json={"ids": ["in-001"]}), 401)
        authorized = {"Authorization": f"Bearer {TOKEN}"}
        assert c.get("/jobs/fruits/predictions/in-001", headers=authorized).status_code == 200
        # What describes the API, and liveness, need no token.
        assert c.get("/health").status_code == 200
        assert c.get("/docs").status_code == 200
        schema = c.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert "401" in schema["paths"]["/jobs"]["get"]["responses"]
    assert schema["paths"]["/health"]["get"]["security"] == []


# -- the Host check on loopback ------------------------------------------------------------------


def test_on_loopback_only_loopback_host_names_are_answered(guarded: Served) -> None:
    authorized = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=guarded.url, timeout=30) as c:
        for host in ("attacker.example", "attacker.example:80", "192.168.1.5", "localhost.evil.com"):
            body = _error(c.get("/jobs", headers={**authorized, "Host": host}), 400)
            assert "loopback" in body["message"]
        for host in ("localhost", f"localhost:{guarded.port}", f"127.0.0.1:{guarded.port}",
                     "[::1]:80", "127.0.0.2", "app.localhost"):
            assert c.get("/jobs", headers={**authorized, "Host": host}).status_code == 200, host


def test_a_host_header_that_is_not_a_host_and_port_is_refused(guarded: Served) -> None:
    authorized = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=guarded.url, timeout=30) as c:
        for host in ("localhost:80@evil.com", "[::1]evil.com", "localhost:evil", "localhost evil",
                     "[::1", "localhost:80:80"):
            body = _error(c.get("/jobs", headers={**authorized, "Host": host}), 400)
            assert "loopback" in body["message"], host
        # Loopback in its other spellings is loopback.
        for host in ("127.1", "0x7f.1:80", "[::ffff:127.0.0.1]", "localhost."):
            assert c.get("/jobs", headers={**authorized, "Host": host}).status_code == 200, host


def test_the_bearer_scheme_is_matched_in_any_case(guarded: Served) -> None:
    with httpx.Client(base_url=guarded.url, timeout=30) as c:
        for given in (f"bearer {TOKEN}", f"BEARER {TOKEN}", f"Bearer  {TOKEN}"):
            assert c.get("/jobs", headers={"Authorization": given}).status_code == 200, given
        for given in (f"Basic {TOKEN}", f"bearer {TOKEN}x", f"bearer{TOKEN}", "bearer"):
            _error(c.get("/jobs", headers={"Authorization": given}), 401)


def _raw(port: int, head: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=60) as conn:
        conn.sendall(head)
        return b"".join(iter(lambda: conn.recv(65536), b""))


def test_a_request_head_over_64_kib_is_refused_however_it_arrives(guarded: Served) -> None:
    def head(pad: int) -> bytes:
        return (b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                b"X-Pad: " + b"p" * pad + b"\r\n\r\n")

    assert len(head(70_000)) > 64 * 1024
    answer = _raw(guarded.port, head(70_000))  # sent whole, in one write
    assert answer.startswith(b"HTTP/1.1 431") and b'"error": "too_large"' in answer
    assert _raw(guarded.port, head(60_000)).startswith(b"HTTP/1.1 200")
    # A second request on a kept-alive connection is held to the same bound.
    first = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    answer = _raw(guarded.port, first + head(70_000))
    assert answer.startswith(b"HTTP/1.1 200") and b"HTTP/1.1 431" in answer


def test_a_request_without_a_host_header_is_answered(guarded: Served) -> None:
    with socket.create_connection(("127.0.0.1", guarded.port), timeout=30) as conn:
        conn.sendall(b"GET /health HTTP/1.0\r\n\r\n")
        answer = b"".join(iter(lambda: conn.recv(65536), b""))
    assert answer.startswith(b"HTTP/1.1 200")


# -- slow clients --------------------------------------------------------------------------------


def test_a_request_head_that_does_not_arrive_in_time_is_closed_with_408(guarded: Served) -> None:
    with socket.create_connection(("127.0.0.1", guarded.port), timeout=60) as conn:
        conn.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")  # and no more
        answer = b"".join(iter(lambda: conn.recv(65536), b""))  # returns when the server closes
    assert answer.startswith(b"HTTP/1.1 408") and b'"error": "timeout"' in answer


def test_a_kept_alive_connection_gets_a_fresh_deadline_per_request(guarded: Served) -> None:
    with socket.create_connection(("127.0.0.1", guarded.port), timeout=60) as conn:
        conn.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        first = conn.recv(65536)
        assert first.startswith(b"HTTP/1.1 200")
        conn.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # the head never ends
        answer = b"".join(iter(lambda: conn.recv(65536), b""))
    assert answer.startswith(b"HTTP/1.1 408")


# -- HEAD, error bodies, the docs ----------------------------------------------------------------


def test_head_is_answered_wherever_get_is(guarded: Served) -> None:
    authorized = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=guarded.url, timeout=30, headers=authorized) as c:
        for path in ("/health", "/jobs", "/jobs/fruits", "/jobs/fruits/predictions/in-001",
                     "/models?limit=2", "/docs", "/openapi.json"):
            got, head = c.get(path), c.head(path)
            assert head.status_code == got.status_code == 200, path
            assert head.content == b""
            assert head.headers["content-length"] == got.headers["content-length"]
            assert head.headers["content-type"] == got.headers["content-type"]
        assert c.head("/jobs/fruits/predictions/nope").status_code == 404
        assert c.head("/jobs/fruits/lookup").status_code == 405  # POST only: no GET there
    with httpx.Client(base_url=guarded.url, timeout=30) as c:
        assert c.head("/jobs").status_code == 401


def test_error_bodies_never_show_the_homes_path(tmp_path: Path) -> None:
    home = tmp_path / "private" / "home"
    names = write(home / "predictions", [record("plum"), record("pear")])
    server = Served(home)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            assert c.get("/jobs/fruits/predictions/plum").status_code == 200
            shard = home / "predictions" / "fruits" / names[0]
            shard.write_bytes(shard.read_bytes()[:100])  # damaged under the server
            with httpx.Client(base_url=server.url, timeout=30) as fresh:
                resp = fresh.get("/jobs/fruits/predictions/pear")
            assert resp.status_code == 503, resp.text
            assert str(tmp_path) not in resp.text
    finally:
        server.close()


def test_the_reference_page_needs_no_network(guarded: Served) -> None:
    with httpx.Client(base_url=guarded.url, timeout=30) as c:
        page = c.get("/docs")
        paths = c.get("/openapi.json").json()["paths"]
        assert c.get("/redoc").status_code == 401  # no such page: nothing public there
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    assert not re.search(r"<script|<link|@import|url\(", html, re.IGNORECASE)
    assert not re.search(r"(src|href)=['\"]?(https?:)?//", html)
    for path in paths:
        assert path in html
    assert "Authorization: Bearer" in html


def test_numbers_out_of_range_are_400_or_422_never_500(guarded: Served) -> None:
    huge = str(10**30)
    with httpx.Client(base_url=guarded.url, timeout=30,
                      headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        for path, params, status in [
            ("/models", {"max_params": huge + "T"}, 400),
            ("/models", {"min_params": huge}, 400),
            ("/models", {"fits": huge + "GB"}, 400),
            ("/models", {"limit": huge}, 422),
            ("/models", {"offset": huge}, 422),
            ("/runs", {"limit": huge}, 422),
            ("/jobs/fruits/predictions", {"limit": huge}, 422),
            ("/jobs/fruits/predictions", {"offset": "-1"}, 422),
        ]:
            _error(c.get(path, params=params), status)


# -- the command ---------------------------------------------------------------------------------


def _serve(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    full = {**os.environ, "ALMANAC_HOME": str(home)}
    full.pop("ALMANAC_TOKEN", None)
    full.update(env or {})
    return subprocess.Popen([sys.executable, "-m", "almanac", "serve", *args], env=full,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _listening(proc: subprocess.Popen[str]) -> tuple[str, list[str]]:
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if m := re.search(r"running on (http://\S+)", line):
            return m.group(1), seen
    raise AssertionError("".join(seen))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_is_a_clean_exit(home: Path, sig: signal.Signals) -> None:
    write(home / "predictions", [record("plum")])
    proc = _serve(home, "--port", "0")
    try:
        url, seen = _listening(proc)
        assert url.startswith("http://127.0.0.1:")
        assert httpx.get(f"{url}/jobs/fruits/predictions/plum", timeout=30).status_code == 200
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert out == "" and "Traceback" not in err and "KeyboardInterrupt" not in err
    assert not any("anyone who can reach it" in line for line in seen)  # loopback: no warning


def test_a_port_in_use_or_a_host_that_cannot_be_bound_is_exit_1(home: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        proc = _serve(home, "--port", str(port))
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in err
    assert "Traceback" not in err
    proc = _serve(home, "--host", "no-such-host.invalid", "--port", "0")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and "no-such-host.invalid" in err and "Traceback" not in err


def test_loopback_is_decided_from_the_address_bound_however_it_is_spelt(home: Path) -> None:
    """No token is needed on loopback, and the Host check is on, for every spelling."""
    write(home / "predictions", [record("plum")])
    spellings = ["127.1", "0x7f.1", "::ffff:127.0.0.1", "::1"]
    if socket.gethostbyname(socket.gethostname()).startswith("127."):
        spellings.append(socket.gethostname())  # the machine's own name, on loopback here
    procs = {host: _serve(home, "--host", host, "--port", "0") for host in spellings}
    try:
        for host, proc in procs.items():
            url, seen = _listening(proc)
            assert not any("anyone who can reach it" in line for line in seen), host
            path = f"{url}/jobs/fruits/predictions/plum"
            evil = httpx.get(path, timeout=30, headers={"Host": "evil.example"})
            assert _error(evil, 400)["message"].startswith("this server answers loopback"), host
            assert httpx.get(path, timeout=30, headers={"Host": "localhost"}).status_code == 200
            assert httpx.get(path, timeout=30).status_code == 200, host  # its own address
            if host == socket.gethostname():  # and the name it was told to bind
                port = url.rsplit(":", 1)[1]
                named = httpx.get(path, timeout=30, headers={"Host": f"{host}:{port}"})
                assert named.status_code == 200
            proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            proc.communicate(timeout=60)
            assert proc.returncode == 0
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()


def test_off_loopback_the_server_needs_a_token(home: Path) -> None:
    proc = _serve(home, "--host", "0.0.0.0", "--port", "0")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "--token or ALMANAC_TOKEN" in err and "Traceback" not in err

    write(home / "predictions", [record("plum")])
    proc = _serve(home, "--host", "0.0.0.0", "--port", "0", env={"ALMANAC_TOKEN": TOKEN})
    try:
        url, seen = _listening(proc)
        port = url.rsplit(":", 1)[1]
        assert any("anyone who can reach it and has the token" in line for line in seen)
        # Asked over loopback only; off loopback there is no Host check, the token guards.
        local = f"http://127.0.0.1:{port}/jobs/fruits/predictions/plum"
        assert httpx.get(local, timeout=30).status_code == 401
        ok = httpx.get(local, timeout=30, headers={"Authorization": f"Bearer {TOKEN}",
                                                   "Host": "almanac.example:443"})
        assert ok.status_code == 200
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0


# -- fuzzing the guarded schema ------------------------------------------------------------------


@pytest.fixture(scope="module")
def guarded_schema(guarded: Served) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{guarded.url}/openapi.json")


fuzz = schemathesis.pytest.from_fixture("guarded_schema")


@fuzz.parametrize()
@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
def test_fuzzed_requests_with_the_token_get_no_5xx(case: schemathesis.Case) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"},
                           checks=[not_a_server_error, status_code_conformance,
                                   content_type_conformance, response_schema_conformance])

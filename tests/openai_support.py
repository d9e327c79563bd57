"""Helpers for the tests of the OpenAI read path: `almanac serve` in a thread on a
loopback port, the official `openai` client pointed at it, and cached records keyed
exactly as a run keys them (batch.run.keys), written by the real ShardWriter with the
candidates a run names."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path
from typing import Any

import uvicorn

from almanac.server import server_config
from batch.cache.store import CandidateInfo, PredictionStore, ShardWriter
from batch.openai_api.asked import read_request
from batch.run.keys import model_identity
from tests.cache_support import record

REVISION = "sha256:" + "ab" * 32  # a local model's weights fingerprint, as a run records it
ADAPTER_REVISION = "lora:sha256:" + "cd" * 32


class Served:
    """uvicorn in a thread, on a socket bound before it starts (as tests/test_server.py)."""

    def __init__(self, home: Path, **options: Any) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(server_config(home, **options))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       daemon=True)
        self.thread.start()

    def client(self, api_key: str = "unused") -> Any:
        import openai

        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=api_key, max_retries=0,
                             timeout=60)

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()


def answer(input_id: str, endpoint: str, body: dict[str, Any], output: str, *,
           model: str = "tiny", adapter: str | None = None, revision: str = REVISION,
           repo_id: str | None = None, **fields: Any) -> dict[str, Any]:
    """The record a run of `model` (and `adapter`) at `revision` writes for the request
    `body` to `endpoint`, keyed as the run keys it."""
    asked = read_request(endpoint, {"model": model, **body})
    identity = model_identity(model, repo_id, revision)
    key = asked.key(identity, ADAPTER_REVISION if adapter else None)
    prompt = json.dumps(asked.prompt) if asked.chat else asked.prompt
    label = model if adapter is None else f"{model}+{adapter}"
    return record(input_id, key=key, prompt=prompt, output=output, model=model,
                  revision=revision, adapter=adapter, candidate=label,
                  adapter_revision=ADAPTER_REVISION if adapter else None,
                  params=asked.sampling.params_json, chat=asked.chat, **fields)


def cache(predictions: Path, job: str, records: list[dict[str, Any]]) -> None:
    """Write `records` as a run of `job` would, naming its candidates first."""
    store = PredictionStore(predictions)
    try:
        seen: dict[str, CandidateInfo] = {}
        for r in records:
            seen.setdefault(r["candidate"], CandidateInfo(
                r["candidate"], r["model"], r["revision"], r["adapter"], r["adapter_revision"],
                len(seen)))
        store.set_candidates(job, list(seen.values()))
        with ShardWriter(store, job, "f" * 32, 100, 4) as writer:
            for r in records:
                writer.add({**r, "job": job})
    finally:
        store.close()

"""Content addresses: one key per request, and fingerprints of local weights.

A key is the SHA-256 of everything that decides a request's output: the
model's identity (repo id + resolved revision, or a fingerprint of a local
directory's files), the adapter's identity, the rendered prompt or messages,
and the normalized sampling parameters. Equal keys are generated once, ever.

A chain's planning (batch.run.upstream) also keys what it remembers: a row's
`row_basis` (its fields) and a candidate's `plan_digest` (everything but the row
that decides the row's key).
"""

from __future__ import annotations

import hashlib
import json
import marshal
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batch.run.spec.settings import Sampling

if TYPE_CHECKING:  # plain types for annotations (the plan builds on this module)
    from batch.run.plan import Target
    from batch.run.spec.job import JobSpec

KEY_VERSION = 1
MEMO_VERSION = 1  # bump when rendering changes what a row's fields make (chains' memo)
# Files that cannot change a model's outputs. Not every `.txt`: a tokenizer's
# vocab.txt and merges.txt decide what the model sees.
_IGNORED_SUFFIXES = (".md", ".gitattributes", ".lock")
_IGNORED_PREFIXES = ("license", "licence", "notice", "readme")


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def request_key(
    model: str,
    adapter: str | None,
    prompt: str | list[dict[str, Any]],
    sampling: Sampling,
) -> str:
    payload = {
        "v": KEY_VERSION,
        "model": model,
        "adapter": adapter,
        "chat" if isinstance(prompt, list) else "prompt": prompt,
        "sampling": sampling.as_dict(),
    }
    return hashlib.sha256(canonical(payload).encode()).hexdigest()


def model_identity(ref: str, repo_id: str | None, revision: str) -> str:
    """The model part of every key, from the revision a run records for it: a local
    directory's weights fingerprint (`sha256:…`), or the Hub commit of `repo_id` (of
    `ref` when the catalog names no repo). A run resolves the revision; a reader of
    the cache forms the same identity from the revision the run recorded."""
    if revision.startswith("sha256:"):
        return f"local:{revision}"
    return f"{repo_id or ref}@{revision}"


def failure_key(job: str, input_id: str, error: str) -> str:
    """Rows that never became a request still need a stable identity for the index."""
    payload = {"v": KEY_VERSION, "failed": [job, input_id, error]}
    return "x" + hashlib.sha256(canonical(payload).encode()).hexdigest()[1:]


def plan_digest(spec: JobSpec, target: Target) -> str:
    """Everything but the row that decides a row's key for this candidate."""
    payload = {
        "v": [KEY_VERSION, MEMO_VERSION],
        "model": target.model_identity,
        "adapter": target.adapter_identity,
        "template": spec.prompt.template,
        "messages": spec.prompt.messages,
        "examples": spec.prompt.examples,
        "context": spec.prompt.context,
        "sampling": spec.sampling.as_dict(),
    }
    return hashlib.sha256(canonical(payload).encode()).hexdigest()


def row_basis(fields: dict[str, Any]) -> str | None:
    """A digest of a row's fields, or None when they hold values it cannot take (a
    Parquet timestamp): such rows are rendered every time. marshal (format 2: no
    back-references, so equal values give equal bytes) is five times faster than JSON;
    equal digests mean equal fields, and a different field order only costs a render."""
    try:
        blob = marshal.dumps(fields, 2)
    except ValueError:
        return None
    return hashlib.blake2b(blob, digest_size=16).hexdigest()


def weight_files(path: Path) -> list[Path]:
    return sorted(
        p for p in path.rglob("*")
        if p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(path).parts)
        and not p.name.lower().endswith(_IGNORED_SUFFIXES)
        and not p.name.lower().startswith(_IGNORED_PREFIXES)
    )


def stat_signature(path: Path) -> str:
    """Cheap to compute: changes whenever any file's name, size or mtime does."""
    parts = [
        f"{p.relative_to(path)}:{st.st_size}:{st.st_mtime_ns}"
        for p in weight_files(path)
        for st in [p.stat()]
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def fingerprint_dir(
    path: Path,
    cache_get: Callable[[str, str], str | None] | None = None,
    cache_put: Callable[[str, str, str], None] | None = None,
) -> str:
    """SHA-256 over every file that can change outputs; cached per stat signature,
    since hashing a 15 GB model once is fine but once per run is not."""
    path = path.resolve()
    signature = stat_signature(path)
    if cache_get and (hit := cache_get(str(path), signature)):
        return hit
    digest = hashlib.sha256()
    for file in weight_files(path):
        digest.update(str(file.relative_to(path)).encode() + b"\0")
        with file.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    value = "sha256:" + digest.hexdigest()
    if cache_put:
        cache_put(str(path), signature, value)
    return value

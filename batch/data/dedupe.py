"""Dropping duplicate examples, keeping the first of each (in the order curate sorts
them, input id then candidate, so the same cache always keeps the same rows).

- `exact`: the same conversation, every turn identical (compared as the JSON text of
  its messages, hashed in Arrow).
- `near`: conversations whose word 3-grams overlap by a Jaccard similarity of about
  `NEAR` or more, found with MinHash (`PERMUTATIONS` hashes, stable across runs and
  machines) and banded locality-sensitive hashing, each candidate pair then checked
  on its signatures; the later of a pair is dropped.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable

import numpy as np
import pyarrow as pa

NEAR = 0.8  # the estimated Jaccard similarity from which two examples count as one
PERMUTATIONS = 64
BANDS = 16  # of PERMUTATIONS // BANDS rows each: pairs at 0.8 meet in a band 99.96% of the time
_PRIME = (1 << 61) - 1
_WORD = re.compile(r"\w+")
_rng = np.random.default_rng(20240501)  # fixed: the same examples are dropped on every run
_A = _rng.integers(1, _PRIME, PERMUTATIONS, dtype=np.uint64)
_B = _rng.integers(0, _PRIME, PERMUTATIONS, dtype=np.uint64)


def first_of_each(identity: pa.Array) -> np.ndarray:
    """Positions of the first row of each distinct value, in order."""
    table = pa.table({"v": identity, "i": pa.array(np.arange(len(identity)))})
    firsts = table.group_by("v", use_threads=False).aggregate([("i", "min")])["i_min"]
    return np.sort(firsts.to_numpy())


def near_unique(texts: Iterable[str]) -> np.ndarray:
    """Positions of the rows to keep: each row not a near duplicate of an earlier kept one."""
    signatures = np.array([_signature(t) for t in texts], dtype=np.uint64).reshape(
        -1, PERMUTATIONS)
    n = len(signatures)
    rows = PERMUTATIONS // BANDS
    dropped = np.zeros(n, dtype=bool)
    seen: list[dict[bytes, list[int]]] = [{} for _ in range(BANDS)]
    for i in range(n):
        sig = signatures[i]
        bands = [sig[b * rows:(b + 1) * rows].tobytes() for b in range(BANDS)]
        near = {j for b, band in enumerate(bands) for j in seen[b].get(band, ())}
        if any(np.mean(signatures[j] == sig) >= NEAR for j in near):
            dropped[i] = True
            continue
        for b, band in enumerate(bands):
            seen[b].setdefault(band, []).append(i)
    return np.flatnonzero(~dropped)


def _signature(text: str) -> np.ndarray:
    words = _WORD.findall(text.lower())
    grams = {" ".join(words[k:k + 3]) for k in range(max(1, len(words) - 2))} or {""}
    hashes = np.fromiter((zlib.crc32(g.encode()) for g in grams), dtype=np.uint64,
                         count=len(grams))
    # (a·h + b) mod p for every permutation at once; the products stay below 2^64
    # because h < 2^32 and a, b are reduced below 2^32 first.
    a, b = _A % (1 << 32), _B % (1 << 32)
    return ((np.outer(hashes, a) + b) % _PRIME).min(axis=0)

"""Dropping duplicate examples, keeping the first of each (in the order curate sorts
them, input id then candidate, so the same cache always keeps the same rows).

- `exact`: the same conversation, every turn identical (compared as the JSON text of
  its messages, hashed in Arrow).
- `near`: two conversations are near duplicates when the Jaccard similarity of their
  sets of word 3-grams (lower-cased words: letters, digits and `_`; the text of every
  turn) is `NEAR` or more; a row near an earlier kept row is dropped. MinHash and LSH
  find the candidate pairs: a signature of `PERMUTATIONS` permutations per row (rensa's
  RMinHash), cut into `BANDS` bands of `ROWS` values; two rows alike in a whole band
  are a candidate pair, which happens at similarity s with probability
  1 - (1 - s^ROWS)^BANDS (at 0.8: 99.8%; 0.9: all but 3 in 10 million; 0.5: 27%, 0.3:
  1.5%). Each candidate pair is then measured exactly on its two sets, so no pair under
  `NEAR` is ever taken for a duplicate; one just over it escapes in about 0.2% of cases.

Words and 3-grams are cut and numbered in Arrow and numpy, and every row's signature
computed in one call. A row alike in no band with any other row is kept outright; only
the rows that share a band go through the rule one by one, in order, each looking up
the earlier kept rows that share one of its bands.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from batch.data import sft

NEAR = 0.8  # the Jaccard similarity of word 3-grams from which two examples count as one
BANDS, ROWS = 20, 6
PERMUTATIONS = BANDS * ROWS  # rensa's LSH cuts the whole signature into the bands
SEED = 1  # the permutations drawn from this seed: the same rows kept on every run
_NOT_WORD = r"[^\p{L}\p{N}_]+"
_CHUNK = 50_000  # signatures read back into numpy this many rows at a time


def first_of_each(identity: pa.Array) -> np.ndarray:
    """Positions of the first row of each distinct value, in order."""
    codes = pc.dictionary_encode(identity).indices.to_numpy(zero_copy_only=False)
    return np.sort(np.unique(codes, return_index=True)[1])


def plain_text(prompt: pa.Array, output: pa.Array) -> pa.Array:
    """Each conversation's turns as one text (what near deduplication compares)."""
    lists = sft.messages_lists(prompt, output)
    content = pc.fill_null(lists.values.field("content"), "")
    return pc.binary_join(pa.ListArray.from_arrays(lists.offsets, content), " ")


def near_unique(texts: pa.Array) -> np.ndarray:
    """Positions of the rows to keep: each row not a near duplicate of an earlier kept one."""
    from rensa import RMinHash, RMinHashLSH  # only a near deduplication needs them

    texts = texts.cast(pa.string())
    firsts = first_of_each(texts)  # identical texts: the later ones go without a signature
    if len(firsts) < 2:
        return firsts
    grams, offsets = shingles(texts.take(pa.array(firsts)))
    signatures = RMinHash.digest_matrix_from_flat_token_hashes(
        grams, offsets.astype(np.uint64), PERMUTATIONS, SEED)
    lsh = RMinHashLSH(NEAR, PERMUTATIONS, BANDS)  # used once, for which rows share a band
    sharing = np.flatnonzero(np.asarray(lsh.query_duplicate_flags_matrix_one_shot(signatures)))
    if len(sharing) == 0:
        return firsts
    keep = np.ones(len(firsts), dtype=bool)
    keep[sharing[_near_earlier(*_take(grams, offsets, sharing))]] = False
    return firsts[keep]


def _near_earlier(grams: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Of rows in order (their 3-grams, as from `shingles`), which are near an earlier
    kept one that is alike with them in a band."""
    n = len(offsets) - 1
    keys = _band_keys(grams, offsets).ravel()
    # Which band keys an earlier row shares (to look up) and a later row (to remember).
    order = np.argsort(keys, kind="stable")
    same = keys[order[1:]] == keys[order[:-1]]
    earlier, later = np.zeros(len(keys), dtype=bool), np.zeros(len(keys), dtype=bool)
    earlier[order[1:][same]] = later[order[:-1][same]] = True
    look, look_at = keys[earlier].tolist(), _bounds(earlier, n)
    keep, keep_at = keys[later].tolist(), _bounds(later, n)
    at = offsets.tolist()
    near = np.zeros(n, dtype=bool)
    kept: dict[int, list[int]] = {}  # a band key: the kept rows that have it
    for i in range(n):
        if look_at[i] < look_at[i + 1]:
            others = {j for key in look[look_at[i]:look_at[i + 1]] for j in kept.get(key, ())}
            mine = set(grams[at[i]:at[i + 1]].tolist()) if others else set()
            if any(jaccard(mine, set(grams[at[j]:at[j + 1]].tolist())) >= NEAR for j in others):
                near[i] = True
                continue
        for key in keep[keep_at[i]:keep_at[i + 1]]:
            kept.setdefault(key, []).append(i)
    return near


def _bounds(chosen: np.ndarray, n: int) -> list[int]:
    """Where each of `n` rows' chosen band keys begin and end in the chosen keys, in order."""
    return np.concatenate([[0], np.cumsum(chosen.reshape(n, BANDS).sum(axis=1))]).tolist()


def _band_keys(grams: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Each row's `BANDS` band keys: a hash of the band's `ROWS` signature values and of
    the band's number, so two rows share a key when they are alike in that band (or, one
    time in 2^64, by chance: a pair more to measure, never a pair taken unmeasured)."""
    from rensa import RMinHash

    n = len(offsets) - 1
    values = np.empty((n, PERMUTATIONS), dtype=np.uint64)
    for at in range(0, n, _CHUNK):  # rensa hands signatures out as lists: a chunk at a time
        part = offsets[at:min(at + _CHUNK, n) + 1]
        matrix = RMinHash.digest_matrix_from_flat_token_hashes(
            grams[part[0]:part[-1]], (part - part[0]).astype(np.uint64), PERMUTATIONS, SEED)
        values[at:at + len(part) - 1] = matrix.to_rows()
    values = values.reshape(n, BANDS, ROWS)
    keys = np.broadcast_to(np.arange(BANDS, dtype=np.uint64), (n, BANDS))
    with np.errstate(over="ignore"):
        for r in range(ROWS):
            keys = _mix(keys ^ values[:, :, r])
    return keys


def _take(grams: np.ndarray, offsets: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 3-grams and offsets of some rows, as `shingles` gives them."""
    sizes = offsets[rows + 1] - offsets[rows]
    new = np.concatenate([[0], np.cumsum(sizes)])
    at = np.repeat(offsets[rows] - new[:-1], sizes) + np.arange(new[-1])
    return grams[at], new


def jaccard(a: set[int], b: set[int]) -> float:
    """|a ∩ b| / |a ∪ b|."""
    both = len(a & b)
    return both / (len(a) + len(b) - both)


def shingles(texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Each text's word 3-grams (a text of fewer than three words: its words as one) as
    64-bit numbers in text order, repeats kept (a signature does not count them); and
    where each text's begin and end (offsets, one more than texts). Equal 3-grams get
    equal numbers within one call."""
    n = len(texts)
    parts = pc.split_pattern_regex(pc.utf8_lower(texts), _NOT_WORD)
    words, owner = parts.flatten(), pc.list_parent_indices(parts)
    real = pc.not_equal(words, "")
    words, owner = words.filter(real), owner.filter(real).to_numpy()
    word = pc.dictionary_encode(words).indices.to_numpy().astype(np.uint64) + np.uint64(1)
    # A 3-gram starts at every word but a text's last two; a text of under three words
    # has one at its first word (of one or two words, 0 past its end).
    second = np.zeros(len(word), dtype=bool)  # the next word is in the same text
    second[:-1] = owner[1:] == owner[:-1]
    third = np.zeros(len(word), dtype=bool)  # and the one after it
    third[:-1] = second[:-1] & second[1:]
    first = np.ones(len(word), dtype=bool)
    first[1:] = ~second[:-1]
    starts = np.flatnonzero(third | first)
    padded = np.concatenate([word, np.zeros(2, np.uint64)])
    with np.errstate(over="ignore"):
        values = _mix(_mix(_mix(padded[starts]) ^ padded[starts + 1] * second[starts])
                      ^ padded[starts + 2] * third[starts])
    count = np.bincount(owner, minlength=n)
    grams_of = np.maximum(count - 2, 1)
    offsets = np.concatenate([[0], np.cumsum(grams_of)])
    if len(values) < offsets[-1]:  # texts without a word: the one 3-gram of none
        every = np.full(offsets[-1], _mix(_mix(_mix(np.zeros(1, np.uint64))))[0])
        every[np.repeat(count > 0, grams_of)] = values
        values = every
    return values, offsets


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: a bijection of 64-bit numbers that spreads every bit."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))

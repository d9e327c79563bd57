"""Dropping duplicate examples, keeping the first of each (in the order curate sorts
them, input id then candidate, so the same cache always keeps the same rows).

- `exact`: the same conversation, every turn identical (compared as the JSON text of
  its messages, hashed in Arrow).
- `near`: two conversations are near duplicates when the Jaccard similarity of their
  sets of word 3-grams (lower-cased words: letters, digits and `_`; the text of every
  turn) is `NEAR` or more; a row near an earlier kept row is dropped. datasketch finds
  the candidate pairs: a MinHash of `PERMUTATIONS` permutations per row, and an LSH
  index of `BANDS` bands of `ROWS` values, which proposes a pair at similarity s with
  probability 1 - (1 - s^ROWS)^BANDS (at 0.8: 99.8%; 0.9: all but 3 in 10 million;
  0.5: 27%, 0.3: 1.5%). Each proposed pair is then measured exactly on its two sets, so
  no pair under `NEAR` is ever taken for a duplicate; one just over it escapes in about
  0.2% of cases.

Words and 3-grams are cut and numbered in Arrow; only the MinHash and the LSH index
work row by row.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from batch.data import sft

NEAR = 0.8  # the Jaccard similarity of word 3-grams from which two examples count as one
PERMUTATIONS = 128
BANDS, ROWS = 20, 6  # BANDS * ROWS <= PERMUTATIONS
SEED = 1  # datasketch's permutations from this seed: the same rows kept on every run
_NOT_WORD = r"[^\p{L}\p{N}_]+"


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
    from datasketch import MinHash, MinHashLSH  # only a near deduplication needs them

    texts = texts.cast(pa.string())
    firsts = first_of_each(texts)  # identical texts: the later ones go without a MinHash
    grams, offsets = shingles(texts.take(pa.array(firsts)))
    low = (grams & np.uint64(0xFFFFFFFF)).astype(np.uint32)  # the 32 bits datasketch permutes
    lsh = MinHashLSH(num_perm=PERMUTATIONS, params=(BANDS, ROWS))
    sketches = MinHash.generator((low[offsets[i]:offsets[i + 1]] for i in range(len(firsts))),
                                 num_perm=PERMUTATIONS, seed=SEED, hashfunc=_same)
    kept = []
    for i, sketch in enumerate(sketches):
        mine = grams[offsets[i]:offsets[i + 1]]
        if any(jaccard(mine, grams[offsets[j]:offsets[j + 1]]) >= NEAR for j in lsh.query(sketch)):
            continue
        lsh.insert(i, sketch, check_duplication=False)
        kept.append(i)
    return firsts[np.array(kept, dtype=np.int64)]


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """|a ∩ b| / |a ∪ b| of two sets held as sorted arrays of distinct values."""
    both = len(np.intersect1d(a, b, assume_unique=True))
    return both / (len(a) + len(b) - both)


def shingles(texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Each text's set of word 3-grams (a text of fewer than three words: its words as one),
    as 64-bit numbers, sorted and distinct per text; and where each text's begin and end
    (offsets, one more than texts). Equal 3-grams get equal numbers within one call."""
    n = len(texts)
    parts = pc.split_pattern_regex(pc.utf8_lower(texts), _NOT_WORD)
    words, owner = parts.flatten(), pc.list_parent_indices(parts)
    real = pc.not_equal(words, "")
    words, owner = words.filter(real), owner.filter(real).to_numpy()
    word = pc.dictionary_encode(words).indices.to_numpy().astype(np.uint64) + np.uint64(1)
    count = np.bincount(owner, minlength=n)
    start = np.concatenate([[0], np.cumsum(count)])[:-1]
    # A 3-gram starts at every word but a text's last two; a text of under three words
    # has one 3-gram at its start (of one or two words, or none: the empty text's).
    grams_of = np.maximum(count - 2, 1)
    gram_owner = np.repeat(np.arange(n), grams_of)
    first = np.repeat(start - np.concatenate([[0], np.cumsum(grams_of)])[:-1], grams_of) + \
        np.arange(len(gram_owner))
    padded = np.concatenate([word, np.zeros(2, np.uint64)])

    def at(k: int) -> np.ndarray:  # the k-th word of each 3-gram, 0 past its text's end
        return np.where(k < count[gram_owner], padded[np.minimum(first + k, len(word))], 0)

    with np.errstate(over="ignore"):
        values = _mix(_mix(_mix(at(0)) ^ at(1)) ^ at(2))
    order = np.lexsort((values, gram_owner))
    values, gram_owner = values[order], gram_owner[order]
    fresh = np.r_[True, (values[1:] != values[:-1]) | (gram_owner[1:] != gram_owner[:-1])]
    values, gram_owner = values[fresh], gram_owner[fresh]
    offsets = np.concatenate([[0], np.cumsum(np.bincount(gram_owner, minlength=n))])
    return values, offsets


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: a bijection of 64-bit numbers that spreads every bit."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _same(value: np.uint32) -> np.uint32:
    """datasketch's hash of a 3-gram's number: the number itself (it mixes it first)."""
    return value

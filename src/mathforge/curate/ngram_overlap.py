"""Token n-gram overlap with benchmark items (GPT-3's contamination test), and exact matches.

Method: the n-gram overlap test of GPT-3 (Brown et al., 2020, appendix C),
13-grams by default, on normalized tokens (`mathforge.curate.text`: NFKC,
lowercase, letters and digits only). A text matches an item when

1. ``benchmark_ngram_overlap``: one `ngram`-token window of the text also
   occurs in the item; or, for texts too short to have one,
2. ``benchmark_exact_substring``: an item shorter than `ngram` tokens occurs,
   token for token, inside the text, or a text shorter than `ngram` tokens
   occurs inside an item. Texts under `min_short_tokens` tokens are too
   generic for it ("Find x.") and skipped.

Extensions to GPT-3's rule: n-grams found in at least `max_item_frequency`
items are boilerplate (an instruction every item repeats) and are ignored;
`mask_numbers` replaces every number by one placeholder token before
tokenizing, on both sides, so a copy whose numbers were changed (template
synthesis does exactly that) overlaps its item again; and `exact_keys` gives
each text's whole token sequence as one hash, for the exact/normalized match
layer.

Scale: all benchmark n-grams become 64-bit hashes in a sorted numpy array;
texts are tokenized and hashed in batches and looked up with `searchsorted`.
Hash collisions (about 2**-64 per pair) are ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from mathforge.curate.text import Tokens, gram_hashes, tokenize

# Texts tokenized and looked up at a time: bounds memory at ~100 MB.
_TEXT_BATCH = 20_000
# RE2: a number (digits, optionally a decimal part); becomes the token "0" when numbers are masked.
_NUMBER = r"\d+(?:[.,]\d+)*"


def mask_numbers(texts: pa.Array | Sequence[str]) -> pa.Array:
    """Replace every number with the digit 0, so texts that differ only in their numbers tokenize alike.

    >>> mask_numbers(["Tom has 12 apples and 3.5 pears."]).to_pylist()
    ['Tom has 0 apples and 0 pears.']
    """
    array = texts if isinstance(texts, pa.Array) else pa.array(list(texts), pa.large_string())
    return pc.replace_substring_regex(pc.fill_null(array, ""), _NUMBER, "0")


def exact_keys(texts: pa.Array | Sequence[str]) -> np.ndarray:
    """Return one uint64 hash per text of its whole normalized token sequence (0 for a text without tokens)."""
    tokens = tokenize(texts)
    data = tokens.hashes
    return np.fromiter(
        (
            xxhash.xxh3_64_intdigest(data[begin:end].tobytes()) if end > begin else 0
            for begin, end in zip(tokens.offsets[:-1], tokens.offsets[1:])
        ),
        dtype=np.uint64,
        count=len(tokens.offsets) - 1,
    )


@dataclass(frozen=True)
class NgramMatch:
    """The first benchmark match of one text."""

    reason: str
    """'benchmark_ngram_overlap' or 'benchmark_exact_substring'."""
    item: int
    """Index of the matched item in the texts the index was built from."""
    text: str
    """The matching tokens, joined by spaces."""
    count: int
    """How many of the text's windows matched some item."""
    share: float
    """`count` over the text's windows: the score of the match, in (0, 1]."""


def _sorted_lookup(hashes: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort (hash, item) pairs by hash, keeping the first item of each hash."""
    order = np.lexsort((items, hashes))
    hashes, items = hashes[order], items[order]
    is_first = np.ones(len(hashes), dtype=bool)
    is_first[1:] = hashes[1:] != hashes[:-1]
    return hashes[is_first], items[is_first]


def _find(keys: np.ndarray, items: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return which queries are among the sorted `keys`, and the item of each query (-1 when absent)."""
    if len(keys) == 0:
        return np.zeros(len(queries), dtype=bool), np.full(len(queries), -1)
    position = np.minimum(np.searchsorted(keys, queries), len(keys) - 1)
    is_hit = keys[position] == queries
    return is_hit, np.where(is_hit, items[position], -1)


@dataclass
class NgramIndex:
    """Hashed benchmark n-grams (and short items) with the item each came from."""

    ngram: int
    min_short_tokens: int
    max_item_frequency: int
    tokens: Tokens
    short_items: dict[int, tuple[np.ndarray, np.ndarray]]
    """Items shorter than `ngram` tokens, by length: sorted hashes of their whole text, and the items."""
    _grams: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    @classmethod
    def build(
        cls, texts: pa.Array | Sequence[str], *, ngram: int, min_short_tokens: int, max_item_frequency: int
    ) -> NgramIndex:
        """Index the benchmark item `texts`; matches name items by their position in `texts`."""
        tokens = tokenize(texts)
        short_items = {}
        for length, hashes, _ in gram_hashes(tokens, ngram - 1):
            items = np.flatnonzero(tokens.lengths == length)
            if length >= min_short_tokens and len(items):
                short_items[length] = _sorted_lookup(hashes[tokens.offsets[items]], items)
        return cls(
            ngram=ngram,
            min_short_tokens=min_short_tokens,
            max_item_frequency=max_item_frequency,
            tokens=tokens,
            short_items=short_items,
        )

    def grams(self, length: int) -> tuple[np.ndarray, np.ndarray]:
        """Return the sorted hashes of all `length`-grams of the items, boilerplate removed, and their items."""
        if length not in self._grams:
            keys, items = np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64)
            for current, hashes, fits in gram_hashes(self.tokens, length):
                if current == length:
                    starts = np.flatnonzero(fits)
                    items = np.searchsorted(self.tokens.offsets, starts, side="right") - 1
                    keys = hashes[starts]
            # One (hash, item) pair per item, then count the items sharing each hash.
            pairs = np.unique(np.stack([keys, items.astype(np.uint64)]), axis=1)
            unique_keys, n_items = np.unique(pairs[0], return_counts=True)
            is_common = np.isin(pairs[0], unique_keys[n_items >= self.max_item_frequency])
            self._grams[length] = _sorted_lookup(pairs[0][~is_common], pairs[1][~is_common].astype(np.int64))
        return self._grams[length]


def match_ngrams(texts: pa.Array, index: NgramIndex) -> dict[int, NgramMatch]:
    """Return the first benchmark match of each contaminated text, by text index."""
    matches: dict[int, NgramMatch] = {}
    for begin in range(0, len(texts), _TEXT_BATCH):
        batch = texts.slice(begin, _TEXT_BATCH)
        for position, match in _match_batch(tokenize(batch), index).items():
            matches[begin + position] = match
    return matches


def _match_batch(tokens: Tokens, index: NgramIndex) -> dict[int, NgramMatch]:
    """Match one batch of tokenized texts; n-gram overlap wins over the short-text rules."""
    lengths = tokens.lengths
    is_short_row = (lengths >= index.min_short_tokens) & (lengths < index.ngram)
    found: dict[int, NgramMatch] = {}
    short_found: dict[int, NgramMatch] = {}
    for length, hashes, fits in gram_hashes(tokens, index.ngram):
        if length == index.ngram:
            starts = np.flatnonzero(fits)
            is_hit, items = _find(*index.grams(length), hashes[starts])
            _record(found, tokens, starts[is_hit], items[is_hit], length, "benchmark_ngram_overlap")
        if length in index.short_items:
            starts = np.flatnonzero(fits)
            is_hit, items = _find(*index.short_items[length], hashes[starts])
            _record(short_found, tokens, starts[is_hit], items[is_hit], length, "benchmark_exact_substring")
        if length < index.ngram:
            rows = np.flatnonzero(is_short_row & (lengths == length))
            if len(rows):
                starts = tokens.offsets[rows]
                is_hit, items = _find(*index.grams(length), hashes[starts])
                _record(short_found, tokens, starts[is_hit], items[is_hit], length, "benchmark_exact_substring")
    return {**short_found, **found}


def _record(
    found: dict[int, NgramMatch], tokens: Tokens, starts: np.ndarray, items: np.ndarray, length: int, reason: str
) -> None:
    """Keep, per text, the first hit (in token order), the number of hits and their share of the text's windows."""
    if not len(starts):
        return
    rows = np.searchsorted(tokens.offsets, starts, side="right") - 1
    unique_rows, first, counts = np.unique(rows, return_index=True, return_counts=True)
    n_windows = np.maximum(tokens.lengths[unique_rows] - length + 1, 1)
    for row, hit, count, windows in zip(unique_rows, first, counts, n_windows):
        if int(row) not in found:
            span = tokens.span(int(starts[hit]), length)
            found[int(row)] = NgramMatch(reason, int(items[hit]), span, int(count), min(1.0, float(count / windows)))

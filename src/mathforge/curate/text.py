"""Normalize, tokenize and hash text for dedup and decontamination, vectorized with pyarrow and numpy.

Two views of a text are used by the curation stages:

- *Normalized text* (exact dedup): Unicode NFKC, lowercase, whitespace runs
  collapsed to one space, trimmed. Punctuation and operators are kept, because
  in math "2+3" and "2-3" are different problems.
- *Tokens* (near-dup shingles, contamination n-grams): the normalized text split
  on everything that is not a Unicode letter or digit, so
  "What is 3/4 of $20?" gives what, is, 3, 4, of, 20. Dropping punctuation is
  the usual choice for n-gram contamination checks (GPT-3, Llama 2) and makes
  both checks robust to reformatting.

A token is hashed once per distinct string (xxh3, 64 bits); the hash of the
L-token sequence starting at token i is ``sum_j tokens[i + j] * M_j`` modulo
2**64 with fixed random odd multipliers ``M_j``. It is order-sensitive, equal
for equal sequences in any table or benchmark, and grows one token at a time,
so all lengths 1..n come out of one pass (`gram_hashes`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

#: Longest token sequence `gram_hashes` can hash.
MAX_GRAM = 256
_SHINGLE_BITS = 40

# Fixed so that hashes are comparable across runs, tables and benchmarks.
_MULTIPLIERS = np.random.default_rng(0x6D617468).integers(0, 2**63, MAX_GRAM, dtype=np.uint64) * np.uint64(
    2
) + np.uint64(1)

# RE2 syntax (pyarrow): any run of characters that are neither letters nor digits.
_NON_WORD = r"[^\pL\pN]+"
# ASCII bytes mapped the way `_NON_WORD` and lowercasing map them: letters lowercased, digits kept,
# everything else a space. Bytes of multi-byte UTF-8 characters (>= 0x80) are left alone.
_ASCII_WORD_BYTES = np.array(
    [(ord(chr(byte).lower()) if chr(byte).isalnum() else 0x20) if byte < 0x80 else byte for byte in range(256)],
    dtype=np.uint8,
)


def _as_array(texts: pa.Array | pa.ChunkedArray | Sequence[str | None]) -> pa.Array:
    """Return `texts` as one large_string array, nulls read as empty strings."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    elif not isinstance(texts, pa.Array):
        texts = pa.array(list(texts), type=pa.large_string())
    return pc.fill_null(texts.cast(pa.large_string()), "")


def _non_ascii_mask(texts: pa.Array) -> pa.Array:
    return pc.invert(pc.string_is_ascii(texts))


def _nfkc(texts: pa.Array) -> pa.Array:
    """Apply NFKC to the non-ASCII texts only (the ASCII ones are already normal, and it is slow)."""
    is_non_ascii = _non_ascii_mask(texts)
    if not pc.any(is_non_ascii).as_py():
        return texts
    return pc.replace_with_mask(texts, is_non_ascii, pc.utf8_normalize(texts.filter(is_non_ascii), "NFKC"))


def _split_words(texts: pa.Array) -> pa.ListArray:
    """Split on ASCII whitespace runs; an empty or blank text gives no words (not [""])."""
    trimmed = pc.ascii_trim_whitespace(texts)
    return pc.ascii_split_whitespace(pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, trimmed.type), trimmed))


def normalize_texts(texts: pa.Array | pa.ChunkedArray | Sequence[str | None]) -> pa.Array:
    """Normalize texts for exact comparison: NFKC, lowercase, single spaces, trimmed.

    >>> normalize_texts(["  What  is\\n2+3? "]).to_pylist()
    ['what is 2+3?']
    """
    words = _split_words(pc.utf8_lower(_nfkc(_as_array(texts))))
    return pc.fill_null(pc.binary_join(words, pa.scalar(" ", pa.large_string())), "")


@dataclass(frozen=True)
class Tokens:
    """Tokens of a batch of texts, flattened: row i owns tokens offsets[i]:offsets[i + 1]."""

    offsets: np.ndarray
    """int64, one more than the number of texts."""
    hashes: np.ndarray
    """uint64 hash of each token."""
    words: pa.Array
    """Each token's string, to show what matched."""

    @property
    def lengths(self) -> np.ndarray:
        """Number of tokens of each text."""
        return np.diff(self.offsets)

    def span(self, start: int, length: int) -> str:
        """Return tokens start:start + length joined by spaces."""
        return " ".join(self.words.slice(start, length).to_pylist())


def tokenize(texts: pa.Array | pa.ChunkedArray | Sequence[str | None]) -> Tokens:
    """Split texts into normalized letter/digit tokens and hash each token.

    >>> tokenize(["What is 3/4 of $20?"]).words.to_pylist()
    ['what', 'is', '3', '4', 'of', '20']
    """
    texts = _nfkc(_as_array(texts))
    # ASCII is mapped byte by byte with a table (fast); texts with other characters go through the regex.
    data = np.frombuffer(texts.buffers()[2], dtype=np.uint8)
    spaced = pa.LargeStringArray.from_buffers(
        len(texts), texts.buffers()[1], pa.py_buffer(_ASCII_WORD_BYTES[data]), offset=texts.offset
    )
    is_non_ascii = _non_ascii_mask(spaced)
    if pc.any(is_non_ascii).as_py():
        others = pc.replace_substring_regex(pc.utf8_lower(spaced.filter(is_non_ascii)), _NON_WORD, " ")
        spaced = pc.replace_with_mask(spaced, is_non_ascii, others)
    lists = _split_words(spaced)
    lengths = pc.fill_null(pc.list_value_length(lists), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    words = lists.flatten()
    encoded = pc.dictionary_encode(words)
    vocabulary = encoded.dictionary.to_pylist()
    vocabulary_hashes = np.fromiter(
        (xxhash.xxh3_64_intdigest(word.encode("utf-8")) for word in vocabulary), dtype=np.uint64, count=len(vocabulary)
    )
    indices = encoded.indices.to_numpy(zero_copy_only=False)
    return Tokens(offsets=offsets, hashes=vocabulary_hashes[indices], words=words)


def gram_hashes(tokens: Tokens, n: int) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield `(L, hashes, fits)` for L = 1..n: the hash of the L tokens starting at each token.

    `hashes[i]` covers flat tokens i..i+L-1 (`hashes` has one entry per token
    with at least L-1 tokens after it in the flat array); `fits[i]` says
    whether those tokens all belong to the same text, i.e. whether the
    L-gram is real. The arrays are reused between steps: copy what you keep.
    """
    if not 1 <= n <= MAX_GRAM:
        raise ValueError(f"n must be in 1..{MAX_GRAM}, got {n}")
    n_tokens = len(tokens.hashes)
    row_end = np.repeat(tokens.offsets[1:], tokens.lengths)
    position = np.arange(n_tokens, dtype=np.int64)
    accumulated = tokens.hashes * _MULTIPLIERS[0]
    for length in range(1, n + 1):
        if length > 1:
            if length > n_tokens:
                return
            accumulated = accumulated[:-1]
            accumulated += tokens.hashes[length - 1 :] * _MULTIPLIERS[length - 1]
        count = n_tokens - length + 1
        yield length, accumulated, position[:count] + length <= row_end[:count]


def shingle_sets(tokens: Tokens, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Return each text's set of `size`-token shingle hashes (40 bits, sorted, flattened) and their row offsets.

    A text with fewer than `size` tokens gets one shingle, its whole token
    sequence, so that short texts still compare; an empty text gets none.
    At most 2**24 texts per call.
    """
    lengths = tokens.lengths
    if len(lengths) >= 1 << (64 - _SHINGLE_BITS):
        raise ValueError(f"shingle_sets takes at most {1 << (64 - _SHINGLE_BITS)} texts per call, got {len(lengths)}")
    short_rows = np.flatnonzero((lengths > 0) & (lengths < size))
    short_hashes = np.zeros(len(short_rows), dtype=np.uint64)
    full_hashes = np.zeros(0, dtype=np.uint64)
    full_rows = np.zeros(0, dtype=np.int64)
    for length, hashes, fits in gram_hashes(tokens, size):
        is_short_of_length = lengths[short_rows] == length
        short_hashes[is_short_of_length] = hashes[tokens.offsets[short_rows[is_short_of_length]]]
        if length == size:
            starts = np.flatnonzero(fits)
            full_hashes = hashes[starts]
            full_rows = np.searchsorted(tokens.offsets, starts, side="right") - 1
    rows = np.concatenate([full_rows, short_rows]).astype(np.uint64)
    # One sort of a 64-bit key (row in the top 24 bits, shingle hash in the low 40) groups and orders
    # each row's shingles; two different shingles then coincide with probability 2**-40.
    keys = np.sort(
        (rows << np.uint64(_SHINGLE_BITS))
        | (np.concatenate([full_hashes, short_hashes]) >> np.uint64(64 - _SHINGLE_BITS))
    )
    is_first = np.ones(len(keys), dtype=bool)
    is_first[1:] = keys[1:] != keys[:-1]
    keys = keys[is_first]
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(np.bincount((keys >> np.uint64(_SHINGLE_BITS)).astype(np.int64), minlength=len(lengths)), out=offsets[1:])
    return keys & np.uint64((1 << _SHINGLE_BITS) - 1), offsets

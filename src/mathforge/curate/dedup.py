"""Remove exact and near-duplicate problems and samples (MinHash LSH: Broder 1997; datasketch).

What "duplicate" means for SFT samples, checked in this order (the earliest
row in input order wins; sort the table first for another priority):

1. ``exact_duplicate_problem``: the row's normalized problem text (see
   `mathforge.curate.text`) first appeared under another `problem_id`. All
   samples of that problem go: one problem under two ids would get twice the
   training weight and twice the per-problem cap.
2. ``exact_duplicate_sample``: same problem and same normalized response as an
   earlier sample.
3. ``near_duplicate_problem``: the problem's text is a near duplicate of an
   earlier kept problem (other id): Jaccard similarity of their token-shingle
   sets at least `problem_threshold` and, by default, the same multiset of
   numbers. All its samples go. The number rule keeps template
   instances ("Ann has 3 apples..." / "Ann has 5 apples...") apart: in math a
   new number is a new problem with a new answer.
4. ``near_duplicate_response``: among the samples of one problem, a response
   that is a near duplicate (Jaccard at least `response_threshold`) of an
   earlier kept response. Several *different* correct responses per problem
   are what rejection sampling wants, so this only removes rephrasings of the
   same solution; the default threshold is high.

Method: a text's shingles are its windows of a few tokens
(`text.shingle_sets`); similarity is the exact Jaccard index of two shingle
sets. Across problems, where comparing all pairs is out of reach, candidates
come from `datasketch.MinHashLSH` over datasketch's "affine32" MinHash
signatures (MurmurHash3 pre-mix, then ``a * h + b mod 2**32`` with
datasketch's own permutation parameters), computed for whole batches with
numpy instead of one `MinHash.update_batch` per row: the same values (a test
compares them), several times faster. The index is built for a threshold
`_LSH_MARGIN` below the decision threshold so that it misses few true pairs;
each candidate is then confirmed by its exact Jaccard, which removes the
estimate's noise (about 0.035 at 0.8 with 128 permutations) from the
decision. Responses are compared only within their problem, a few at a
time, so they need no index.

A table without a `response` column is read as a problem table (row id
`problem_id`): only the problem rules apply.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse
import xxhash
from datasketch import LeanMinHash, MinHash, MinHashLSH
from pydantic import Field

from mathforge.section import Section
from mathforge.curate.result import CurateResult, codes, detail_json, require_columns, row_ids, split_rows
from mathforge.curate.text import normalize_texts, shingle_sets, tokenize

# The LSH index looks for pairs this much below the decision threshold:
# candidates are confirmed exactly, so a wider net costs little and a pair
# just above the threshold is not lost to the index's S-curve.
_LSH_MARGIN = 0.15
# Signatures are computed for about this many shingles at a time: the
# (shingles x num_perm) temporary then stays in cache, which measured ~3x
# faster than one big product.
_SHINGLE_BATCH = 1024
# Responses are normalized, tokenized and compared about this many rows at a time (whole problems).
_RESPONSE_BATCH_ROWS = 20_000
# A problem's responses are compared all pairs at once, with a dense incidence matrix up to
# this many cells and a sparse one beyond (problems with hundreds of samples).
_DENSE_CELLS = 4_000_000
_EMPTY = np.uint32(0xFFFFFFFF)

# Chosen with benchmarks/dedup_quality.py: precision 0.96, recall 0.91-0.93 over three planted sets.
DEFAULT_PROBLEM_THRESHOLD = 0.77
DEFAULT_PROBLEM_SHINGLE_SIZE = 1
# Not benchmarked: high on purpose, so that only rephrasings of one solution go.
DEFAULT_RESPONSE_THRESHOLD = 0.9
DEFAULT_RESPONSE_SHINGLE_SIZE = 3
DEFAULT_NUM_PERM = 128
DEFAULT_SEED = 1


class DedupConfig(Section):
    """Exact and near-duplicate removal."""

    enabled: bool = Field(default=True, description="Run exact dedup (problem text, then problem + response).")
    near_duplicates: bool = Field(default=True, description="Also remove near duplicates with MinHash.")
    problem_threshold: float = Field(
        default=DEFAULT_PROBLEM_THRESHOLD,
        gt=0.0,
        le=1.0,
        description="Jaccard similarity of token-shingle sets from which two problems are near duplicates "
        "(chosen with benchmarks/dedup_quality.py).",
    )
    response_threshold: float = Field(
        default=DEFAULT_RESPONSE_THRESHOLD,
        gt=0.0,
        le=1.0,
        description="Jaccard similarity of token-shingle sets from which two responses to one problem are near "
        "duplicates.",
    )
    problem_shingle_size: int = Field(
        default=DEFAULT_PROBLEM_SHINGLE_SIZE,
        ge=1,
        le=32,
        description="Tokens per shingle of a problem (1: word sets, robust to reordered sentences).",
    )
    response_shingle_size: int = Field(
        default=DEFAULT_RESPONSE_SHINGLE_SIZE,
        ge=1,
        le=32,
        description="Tokens per shingle of a response (responses to one problem share most words, not their order).",
    )
    num_perm: int = Field(default=DEFAULT_NUM_PERM, ge=16, le=1024, description="MinHash permutations (problem index).")
    seed: int = Field(default=DEFAULT_SEED, ge=0, description="Seed of the MinHash permutations.")
    require_same_numbers: bool = Field(
        default=True, description="Problems with different numbers are never near duplicates."
    )
    compare_responses: bool = Field(default=True, description="Remove near-duplicate responses within a problem.")


def dedup_exact(table: pa.Table) -> CurateResult:
    """Drop rows whose problem text belongs to an earlier problem_id, then repeated (problem, response) pairs.

    Reads `problem_id`, `problem`, `response` (if present) and the row id;
    adds no column. Reasons: ``exact_duplicate_problem``,
    ``exact_duplicate_sample``; details name the row or problem kept.
    """
    require_columns(table, ["problem_id", "problem"], "dedup_exact")
    problem_ids = table.column("problem_id").to_pylist()
    ids = row_ids(table).to_pylist()
    problem_codes = codes(table.column("problem_id"))
    _, first_row_of_text, text_codes = np.unique(
        _normalized_keys(table.column("problem")), return_index=True, return_inverse=True
    )
    text_codes = text_codes.reshape(-1)
    owner_rows = first_row_of_text[text_codes]
    is_other_problem = problem_codes[owner_rows] != problem_codes

    reasons: list[str | None] = [None] * table.num_rows
    details: list[str | None] = [None] * table.num_rows
    for row in np.flatnonzero(is_other_problem):
        reasons[row] = "exact_duplicate_problem"
        details[row] = detail_json(duplicate_of_problem=problem_ids[owner_rows[row]])
    if "response" in table.column_names:
        # One 64-bit key per (problem, response): the problem code spread by an odd constant, wrapping.
        keys = _normalized_keys(table.column("response")) + problem_codes.astype(np.uint64) * np.uint64(
            0x9E3779B97F4A7C15
        )
        _, first_row_of_key, inverse = np.unique(keys, return_index=True, return_inverse=True)
        first_rows = first_row_of_key[inverse.reshape(-1)]
        for row in np.flatnonzero((first_rows != np.arange(table.num_rows)) & ~is_other_problem):
            reasons[row] = "exact_duplicate_sample"
            details[row] = detail_json(duplicate_of=ids[first_rows[row]])
    return split_rows("dedup_exact", table, reasons, details)


def dedup_near(
    table: pa.Table,
    *,
    problem_threshold: float = DEFAULT_PROBLEM_THRESHOLD,
    response_threshold: float = DEFAULT_RESPONSE_THRESHOLD,
    problem_shingle_size: int = DEFAULT_PROBLEM_SHINGLE_SIZE,
    response_shingle_size: int = DEFAULT_RESPONSE_SHINGLE_SIZE,
    num_perm: int = DEFAULT_NUM_PERM,
    seed: int = DEFAULT_SEED,
    require_same_numbers: bool = True,
    compare_responses: bool = True,
) -> CurateResult:
    """Drop problems that nearly duplicate an earlier problem, then near-duplicate responses within a problem.

    Reads `problem_id`, `problem`, `response` (if present) and the row id;
    adds no column. Reasons: ``near_duplicate_problem`` (detail: the kept
    problem_id and the Jaccard similarity), ``near_duplicate_response``
    (detail: the kept sample_id and the Jaccard similarity). Empty texts are
    left to exact dedup.
    """
    require_columns(table, ["problem_id", "problem"], "dedup_near")
    # Validate through the config so that the function and the config cannot disagree on bounds.
    DedupConfig(
        problem_threshold=problem_threshold,
        response_threshold=response_threshold,
        problem_shingle_size=problem_shingle_size,
        response_shingle_size=response_shingle_size,
        num_perm=num_perm,
        seed=seed,
        require_same_numbers=require_same_numbers,
        compare_responses=compare_responses,
    )
    problem_codes = codes(table.column("problem_id"))
    _, first_rows = np.unique(problem_codes, return_index=True)
    texts = table.column("problem").take(first_rows)
    matches = _near_duplicate_problems(
        texts,
        threshold=problem_threshold,
        shingle_size=problem_shingle_size,
        num_perm=num_perm,
        seed=seed,
        require_same_numbers=require_same_numbers,
    )
    problem_ids = table.column("problem_id").take(first_rows).to_pylist()
    reasons: list[str | None] = [None] * table.num_rows
    details: list[str | None] = [None] * table.num_rows
    is_dropped_problem = np.zeros(len(first_rows), dtype=bool)
    is_dropped_problem[list(matches)] = True
    for row in np.flatnonzero(is_dropped_problem[problem_codes]):
        kept, similarity = matches[int(problem_codes[row])]
        reasons[row] = "near_duplicate_problem"
        details[row] = detail_json(duplicate_of_problem=problem_ids[kept], jaccard=round(similarity, 3))
    if compare_responses and "response" in table.column_names:
        ids = row_ids(table).to_pylist()
        candidates = np.flatnonzero(~is_dropped_problem[problem_codes])
        for row, kept_row, similarity in _near_duplicate_responses(
            table.column("response"),
            problem_codes,
            candidates,
            threshold=response_threshold,
            shingle_size=response_shingle_size,
        ):
            reasons[row] = "near_duplicate_response"
            details[row] = detail_json(duplicate_of=ids[kept_row], jaccard=round(similarity, 3))
    return split_rows("dedup_near", table, reasons, details)


def minhash_signatures(
    texts: pa.Array | pa.ChunkedArray | list[str], *, shingle_size: int, num_perm: int, seed: int
) -> np.ndarray:
    """Return the MinHash signature of each text's token shingles, shape (n_texts, num_perm), uint32.

    Equal to datasketch `MinHash(num_perm, seed)` updated with the same 32-bit
    shingle hashes (scheme "affine32"). An empty text gets all 0xFFFFFFFF,
    datasketch's empty signature.
    """
    shingles, offsets = shingle_sets(tokenize(texts), shingle_size)
    return signatures_of_shingles(fold_to_32_bits(shingles), offsets, num_perm=num_perm, seed=seed)


def fold_to_32_bits(hashes: np.ndarray) -> np.ndarray:
    """Fold 64-bit hashes to 32 bits (xor of the halves), the input width of "affine32" MinHash."""
    return (hashes ^ (hashes >> np.uint64(32))).astype(np.uint32)


def signatures_of_shingles(values: np.ndarray, offsets: np.ndarray, *, num_perm: int, seed: int) -> np.ndarray:
    """Return per-row MinHash signatures of 32-bit shingle hashes `values[offsets[i]:offsets[i + 1]]`."""
    permutation_a, permutation_b = MinHash(num_perm=num_perm, seed=seed).permutations
    mixed = _fmix32(values.astype(np.uint32))
    n_rows = len(offsets) - 1
    signatures = np.full((n_rows, num_perm), _EMPTY, dtype=np.uint32)
    rows = np.flatnonzero(np.diff(offsets) > 0)
    starts = offsets[rows]
    first = 0
    while first < len(rows):
        last = max(int(np.searchsorted(starts, starts[first] + _SHINGLE_BATCH)), first + 1)
        batch_rows = rows[first:last]
        begin, end = starts[first], offsets[batch_rows[-1] + 1]
        permuted = mixed[begin:end, None] * permutation_a
        permuted += permutation_b
        signatures[batch_rows] = np.minimum.reduceat(permuted, starts[first:last] - begin, axis=0)
        first = last
    return signatures


def _fmix32(values: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer: datasketch's "affine32" pre-mix of every input hash."""
    values = values ^ (values >> np.uint32(16))
    values = values * np.uint32(0x85EBCA6B)
    values = values ^ (values >> np.uint32(13))
    values = values * np.uint32(0xC2B2AE35)
    return values ^ (values >> np.uint32(16))


def _normalized_keys(texts: pa.ChunkedArray) -> np.ndarray:
    """Return a 64-bit hash of each normalized text, normalizing a batch at a time to bound memory."""
    keys = np.empty(len(texts), dtype=np.uint64)
    for begin in range(0, len(texts), _RESPONSE_BATCH_ROWS):
        normalized = normalize_texts(texts.slice(begin, _RESPONSE_BATCH_ROWS)).to_pylist()
        keys[begin : begin + len(normalized)] = [xxhash.xxh3_64_intdigest(text.encode("utf-8")) for text in normalized]
    return keys


def _number_keys(texts: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Return a hash of each text's multiset of number tokens (order-free: a sum of token hashes).

    Commas between digits are dropped first, so "$20,000" and "$20000" have the same numbers.
    """
    texts = texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts
    for _ in range(2):  # a match consumes its digits: "1,2,3" needs two passes
        texts = pc.replace_substring_regex(texts, r"(\d),(\d)", r"\1\2")
    tokens = tokenize(texts)
    is_number = pc.match_substring_regex(tokens.words, r"^\pN+$").to_numpy(zero_copy_only=False)
    running = np.zeros(len(tokens.hashes) + 1, dtype=np.uint64)
    np.cumsum(np.where(is_number, tokens.hashes, np.uint64(0)), out=running[1:])
    return running[tokens.offsets[1:]] - running[tokens.offsets[:-1]]


def _jaccard(shingles: np.ndarray, offsets: np.ndarray, row: int, others: Sequence[int] | np.ndarray) -> np.ndarray:
    """Return the exact Jaccard similarity of row `row`'s shingle set with each of `others`' (none empty)."""
    mine = shingles[offsets[row] : offsets[row + 1]]
    others = np.asarray(others, dtype=np.int64)
    starts, lengths = offsets[others], offsets[others + 1] - offsets[others]
    # Gather all their shingles at once (concatenated ranges), then look each up in my sorted set.
    gather = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
    theirs = shingles[gather]
    position = np.minimum(np.searchsorted(mine, theirs), len(mine) - 1)
    owners = np.repeat(np.arange(len(others)), lengths)
    shared = np.bincount(owners[mine[position] == theirs], minlength=len(others))
    return shared / (len(mine) + lengths - shared)


def _near_duplicate_problems(
    texts: pa.ChunkedArray,
    *,
    threshold: float,
    shingle_size: int,
    num_perm: int,
    seed: int,
    require_same_numbers: bool,
) -> dict[int, tuple[int, float]]:
    """Map each near-duplicate problem (index into `texts`) to (kept problem, Jaccard similarity)."""
    shingles, offsets = shingle_sets(tokenize(texts), shingle_size)
    signatures = signatures_of_shingles(fold_to_32_bits(shingles), offsets, num_perm=num_perm, seed=seed)
    number_keys = _number_keys(texts) if require_same_numbers else np.zeros(len(texts), dtype=np.uint64)
    index = MinHashLSH(threshold=max(threshold - _LSH_MARGIN, 0.05), num_perm=num_perm)
    matches: dict[int, tuple[int, float]] = {}
    for problem in np.flatnonzero(np.diff(offsets) > 0):
        sketch = LeanMinHash(seed=seed, hashvalues=signatures[problem], scheme="affine32")
        candidates = sorted(key for key in index.query(sketch) if number_keys[key] == number_keys[problem])
        if candidates:
            similarities = _jaccard(shingles, offsets, problem, candidates)
            best = int(np.argmax(similarities))
            if similarities[best] >= threshold:
                matches[int(problem)] = (candidates[best], float(similarities[best]))
                continue
        index.insert(int(problem), sketch)
    return matches


def _near_duplicate_responses(
    responses: pa.ChunkedArray, problem_codes: np.ndarray, rows: np.ndarray, *, threshold: float, shingle_size: int
) -> Iterator[tuple[int, int, float]]:
    """Yield (row, kept row, Jaccard) for responses that nearly duplicate an earlier one of their problem."""
    order = rows[np.lexsort((rows, problem_codes[rows]))]
    group_starts = np.flatnonzero(np.diff(problem_codes[order], prepend=-1))
    group_ends = np.append(group_starts[1:], len(order))
    is_multi = group_ends - group_starts > 1
    group_starts, group_ends = group_starts[is_multi], group_ends[is_multi]
    first = 0
    while first < len(group_starts):
        last = max(int(np.searchsorted(group_starts, group_starts[first] + _RESPONSE_BATCH_ROWS)), first + 1)
        base = group_starts[first]
        batch = order[base : group_ends[last - 1]]
        shingles, offsets = shingle_sets(tokenize(responses.take(batch)), shingle_size)
        for start, end in zip(group_starts[first:last] - base, group_ends[first:last] - base):
            similarities = _group_jaccard(shingles[offsets[start] : offsets[end]], np.diff(offsets[start : end + 1]))
            kept: list[int] = []
            for position, row_similarities in enumerate(similarities.tolist()):
                if offsets[start + position] == offsets[start + position + 1]:
                    continue  # empty: left to exact dedup
                best = max(kept, key=row_similarities.__getitem__, default=None)
                if best is not None and row_similarities[best] >= threshold:
                    yield int(batch[start + position]), int(batch[start + best]), row_similarities[best]
                else:
                    kept.append(position)
        first = last


def _group_jaccard(shingles: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Return the matrix of exact Jaccard similarities between the shingle sets of a few rows (flattened)."""
    unique, column = np.unique(shingles, return_inverse=True)
    owner = np.repeat(np.arange(len(lengths)), lengths)
    if len(lengths) * len(unique) <= _DENSE_CELLS:
        incidence = np.zeros((len(lengths), len(unique)), dtype=np.float32)
        incidence[owner, column] = 1.0
        shared = incidence @ incidence.T
    else:
        incidence = scipy.sparse.csr_matrix(
            (np.ones(len(shingles), dtype=np.float32), (owner, column)), shape=(len(lengths), len(unique))
        )
        shared = (incidence @ incidence.T).toarray()
    union = lengths[:, None] + lengths[None, :] - shared
    return np.divide(shared, union, out=np.zeros_like(shared), where=union > 0)

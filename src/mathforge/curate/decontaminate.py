"""Drop rows that leak benchmark test items: token n-gram overlap, exact substrings for short texts.

Method: the n-gram overlap test of GPT-3 (Brown et al., 2020, appendix C),
13-grams by default, on normalized tokens (`mathforge.curate.text`: NFKC,
lowercase, letters and digits only). A row is contaminated when

1. ``benchmark_ngram_overlap``: one `ngram`-token window of a checked column
   also occurs in a benchmark item; or, for texts too short to have one,
2. ``benchmark_exact_substring``: a benchmark item shorter than `ngram`
   tokens occurs, token for token, inside the row, or a row shorter than
   `ngram` tokens occurs inside a benchmark item. That is an exact substring
   match on the normalized text, at token boundaries. Texts under
   `min_short_tokens` tokens are too generic for it ("Find x.") and skipped.

Extensions to GPT-3's rule: n-grams found in at least `max_item_frequency`
items are boilerplate (an instruction every item repeats) and are ignored,
so rows that repeat the instruction are not flagged; and each detail names
the benchmark, the item and the matching tokens, which is the contamination
report.

Scale: all benchmark n-grams become 64-bit hashes in a sorted numpy array;
each distinct row text is tokenized and hashed in batches and looked up with
`searchsorted`. Hash collisions (about 2**-64 per pair) are ignored.

Benchmarks are local JSONL, JSON-lines, Parquet or `datasets.save_to_disk`
directories, or hub dataset names (``name`` or ``name:config``) when online.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import Field

from mathforge.config import Section
from mathforge.curate.result import CurateResult, detail_json, require_columns, split_rows
from mathforge.curate.text import Tokens, gram_hashes, tokenize

_LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet")
# Distinct texts tokenized and looked up at a time: bounds memory at ~100 MB.
_TEXT_BATCH = 20_000


class DecontaminationConfig(Section):
    """Benchmark decontamination; runs when `benchmarks` is not empty."""

    benchmarks: tuple[str, ...] = Field(
        default=(),
        description="Benchmark test sets: local .jsonl/.json/.parquet files, save_to_disk directories, "
        "or hub dataset names ('name' or 'name:config', online only).",
    )
    text_fields: tuple[str, ...] = Field(
        default=("problem", "question"), min_length=1, description="Item text field: the first one present is used."
    )
    id_field: str = Field(default="id", description="Item id field; the row number when absent.")
    split: str = Field(default="test", description="Split read from hub datasets and saved DatasetDicts.")
    ngram: int = Field(default=13, ge=4, le=64, description="Tokens per n-gram.")
    min_short_tokens: int = Field(
        default=4, ge=1, description="Texts shorter than `ngram` tokens are matched as substrings from this length on."
    )
    columns: tuple[str, ...] = Field(default=("problem",), min_length=1, description="Row columns checked.")
    max_item_frequency: int = Field(
        default=10, ge=2, description="N-grams found in at least this many benchmark items are boilerplate, ignored."
    )


@dataclass(frozen=True)
class Benchmark:
    """Texts of one benchmark's test items, with their ids."""

    name: str
    item_ids: tuple[str, ...]
    texts: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.item_ids) != len(self.texts):
            raise ValueError(f"benchmark {self.name!r}: {len(self.item_ids)} ids for {len(self.texts)} texts")


class BenchmarkLoadError(RuntimeError):
    """A benchmark could not be read (missing file, unknown format or field, hub unreachable)."""


def load_benchmark(
    source: str | Path,
    *,
    text_fields: Sequence[str] = ("problem", "question"),
    id_field: str = "id",
    split: str = "test",
) -> Benchmark:
    """Read a benchmark's items from a local file or directory, or from the hub.

    Args:
        source: a .jsonl/.json (JSON lines) or .parquet file, a directory
            written by `datasets.save_to_disk`, or a hub dataset name
            (``name`` or ``name:config``), which needs a network.
        text_fields: candidate text fields, the first present is used.
        id_field: item id field; the row number (from 0) when absent.
        split: split to read from hub datasets and saved DatasetDicts.

    Raises:
        BenchmarkLoadError: naming the source and what went wrong.
    """
    path = Path(source)
    if path.exists():
        name = path.stem if path.is_file() else path.name
        records = _read_local(path, split)
    elif path.suffix in _LOCAL_SUFFIXES or str(source).startswith((".", "/")):
        raise BenchmarkLoadError(f"benchmark file not found: {source}")
    else:
        name, records = str(source), _read_hub(str(source), split)
    if not records:
        raise BenchmarkLoadError(f"benchmark {source} has no items")
    text_field = next((f for f in text_fields if f in records[0]), None)
    if text_field is None:
        raise BenchmarkLoadError(f"benchmark {source}: none of the fields {list(text_fields)} in {sorted(records[0])}")
    ids = tuple(str(record[id_field]) if id_field in record else str(i) for i, record in enumerate(records))
    return Benchmark(name=name, item_ids=ids, texts=tuple(str(record.get(text_field) or "") for record in records))


def decontaminate(
    table: pa.Table,
    benchmarks: Sequence[Benchmark],
    *,
    ngram: int = 13,
    min_short_tokens: int = 4,
    columns: Sequence[str] = ("problem",),
    max_item_frequency: int = 10,
) -> CurateResult:
    """Drop rows whose checked columns overlap a benchmark item.

    Reads `columns`, `problem_id` and the row id; adds no column. Reasons:
    ``benchmark_ngram_overlap``, ``benchmark_exact_substring``; the detail
    names the benchmark, item id, column, the matching tokens and how many
    of the row's n-grams matched.
    """
    require_columns(table, ["problem_id", *columns], "decontaminate")
    DecontaminationConfig(
        ngram=ngram, min_short_tokens=min_short_tokens, columns=tuple(columns), max_item_frequency=max_item_frequency
    )
    index = _BenchmarkIndex.build(
        benchmarks, ngram=ngram, min_short_tokens=min_short_tokens, max_item_frequency=max_item_frequency
    )
    reasons: list[str | None] = [None] * table.num_rows
    details: list[str | None] = [None] * table.num_rows
    for column in columns:
        values = table.column(column).combine_chunks()
        encoded = pc.dictionary_encode(pc.fill_null(values, ""))
        matches = _match_texts(encoded.dictionary, index)
        codes = encoded.indices.to_numpy(zero_copy_only=False)
        for row in np.flatnonzero(np.isin(codes, list(matches))):
            if reasons[row] is None:
                match = matches[int(codes[row])]
                reasons[row] = match.reason
                details[row] = detail_json(
                    benchmark=index.benchmark_names[match.item],
                    item_id=index.item_ids[match.item],
                    column=column,
                    match=match.text,
                    n_matching_ngrams=match.count,
                )
    return split_rows("decontaminate", table, reasons, details)


def count_by_benchmark(rejected: pa.Table) -> dict[str, int]:
    """Count decontamination drops per benchmark from a rejected table (for the dataset card)."""
    counts: dict[str, int] = {}
    for row in rejected.filter(pc.equal(rejected.column("stage"), "decontaminate")).column("detail").to_pylist():
        name = json.loads(row)["benchmark"]
        counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items()))


def _read_local(path: Path, split: str) -> list[dict]:
    """Read the records of a local JSON-lines or Parquet file or saved dataset directory."""
    if path.is_dir():
        import datasets

        try:
            loaded = datasets.load_from_disk(str(path))
        except (FileNotFoundError, ValueError) as error:
            raise BenchmarkLoadError(f"{path} is not a datasets.save_to_disk directory: {error}") from error
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise BenchmarkLoadError(f"{path} has splits {sorted(loaded)}, not {split!r}")
            loaded = loaded[split]
        return loaded.to_list()
    if path.suffix == ".parquet":
        return pq.read_table(path).to_pylist()
    if path.suffix in (".jsonl", ".json"):
        records = []
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    try:
                        records.append(json.loads(line))
                    except json.JSONDecodeError as error:
                        raise BenchmarkLoadError(f"{path}:{number}: invalid JSON: {error}") from error
        return records
    raise BenchmarkLoadError(f"unsupported benchmark file {path}: use {', '.join(_LOCAL_SUFFIXES)} or a saved dataset")


def _read_hub(name: str, split: str) -> list[dict]:
    """Read a split of a hub dataset ('name' or 'name:config')."""
    import datasets

    repo, _, config = name.partition(":")
    try:
        return datasets.load_dataset(repo, config or None, split=split).to_list()
    except Exception as error:  # the hub client raises many types (connection, offline mode, missing repo)
        raise BenchmarkLoadError(
            f"benchmark {name!r} is not a local path and could not be loaded from the hub (offline?): {error}"
        ) from error


@dataclass(frozen=True)
class _Match:
    reason: str
    item: int
    text: str
    count: int


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
class _BenchmarkIndex:
    """Hashed benchmark n-grams (and short items) with the item each came from."""

    ngram: int
    min_short_tokens: int
    max_item_frequency: int
    tokens: Tokens
    benchmark_names: list[str]
    item_ids: list[str]
    short_items: dict[int, tuple[np.ndarray, np.ndarray]]
    """Items shorter than `ngram` tokens, by length: sorted hashes of their whole text, and the items."""
    _grams: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    @classmethod
    def build(
        cls, benchmarks: Sequence[Benchmark], *, ngram: int, min_short_tokens: int, max_item_frequency: int
    ) -> _BenchmarkIndex:
        if not benchmarks or not all(isinstance(b, Benchmark) for b in benchmarks):
            raise ValueError("decontaminate needs at least one Benchmark (see load_benchmark)")
        tokens = tokenize([text for benchmark in benchmarks for text in benchmark.texts])
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
            benchmark_names=[b.name for b in benchmarks for _ in b.texts],
            item_ids=[item_id for b in benchmarks for item_id in b.item_ids],
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


def _match_texts(texts: pa.Array, index: _BenchmarkIndex) -> dict[int, _Match]:
    """Return the first benchmark match of each contaminated text, by text index."""
    matches: dict[int, _Match] = {}
    for begin in range(0, len(texts), _TEXT_BATCH):
        batch = texts.slice(begin, _TEXT_BATCH)
        for position, match in _match_batch(tokenize(batch), index).items():
            matches[begin + position] = match
    return matches


def _match_batch(tokens: Tokens, index: _BenchmarkIndex) -> dict[int, _Match]:
    """Match one batch of tokenized texts; n-gram overlap wins over the short-text rules."""
    lengths = tokens.lengths
    is_short_row = (lengths >= index.min_short_tokens) & (lengths < index.ngram)
    found: dict[int, _Match] = {}
    short_found: dict[int, _Match] = {}
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
    found: dict[int, _Match], tokens: Tokens, starts: np.ndarray, items: np.ndarray, length: int, reason: str
) -> None:
    """Keep, per text, the first hit (in token order) and the number of hits."""
    if not len(starts):
        return
    rows = np.searchsorted(tokens.offsets, starts, side="right") - 1
    unique_rows, first, counts = np.unique(rows, return_index=True, return_counts=True)
    for row, hit, count in zip(unique_rows, first, counts):
        if int(row) not in found:
            found[int(row)] = _Match(reason, int(items[hit]), tokens.span(int(starts[hit]), length), int(count))

"""Check any dataset file for benchmark contamination, streaming: one verdict line per input row.

`scan_file` reads a JSONL or Parquet file in batches of `batch_rows` rows,
checks one text field with a built `Decontaminator` and writes one JSON line
per input row to the output: ``row`` (0-based position), ``id`` (when the
input has the id field), ``contaminated``, and for a hit ``benchmark``,
``item_id``, ``layer``, ``reason`` and ``score``. Memory is one batch of rows
plus the benchmark indexes, whatever the file's size. This is what
`mathforge decontaminate` runs; users point it at datasets they download.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from mathforge.curate.decontaminate import Decontaminator


class ScanInputError(ValueError):
    """An input file that cannot be scanned; the message names the file, row and field."""


@dataclass
class ScanResult:
    """Rows read and flagged, and flagged rows by (benchmark, layer)."""

    n_rows: int = 0
    n_contaminated: int = 0
    by_benchmark_layer: Counter[tuple[str, str]] = field(default_factory=Counter)


def _jsonl_batches(path: Path, text_field: str, id_field: str, batch_rows: int) -> Iterator[tuple[list[str], list]]:
    texts: list[str] = []
    ids: list = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ScanInputError(f"{path}:{number}: invalid JSON: {error}") from error
            value = record.get(text_field) if isinstance(record, dict) else None
            if not isinstance(value, str):
                raise ScanInputError(f"{path}:{number}: field {text_field!r} is missing or not a string")
            texts.append(value)
            ids.append(record.get(id_field))
            if len(texts) == batch_rows:
                yield texts, ids
                texts, ids = [], []
    if texts:
        yield texts, ids


def _parquet_batches(path: Path, text_field: str, id_field: str, batch_rows: int) -> Iterator[tuple[pa.Array, list]]:
    parquet = pq.ParquetFile(path)
    names = parquet.schema_arrow.names
    if text_field not in names:
        raise ScanInputError(f"{path}: no column {text_field!r} (columns: {names})")
    columns = [text_field] + ([id_field] if id_field in names else [])
    for batch in parquet.iter_batches(batch_size=batch_rows, columns=columns):
        texts = batch.column(text_field)
        if not pa.types.is_string(texts.type) and not pa.types.is_large_string(texts.type):
            raise ScanInputError(f"{path}: column {text_field!r} has type {texts.type}, not string")
        ids = batch.column(id_field).to_pylist() if id_field in names else [None] * batch.num_rows
        yield texts, ids


def scan_file(
    source: str | Path,
    output: str | Path,
    checker: Decontaminator,
    *,
    text_field: str = "problem",
    id_field: str = "id",
    batch_rows: int = 20_000,
    on_batch: Callable[[ScanResult], None] | None = None,
) -> ScanResult:
    """Check `text_field` of every row of a .jsonl or .parquet file; write one verdict line per row to `output`.

    `on_batch` is called with the running result after each batch (progress).

    Raises:
        ScanInputError: unknown file type, invalid JSON line, missing or non-string field (naming file and row).
    """
    source = Path(source)
    if not source.exists():
        raise ScanInputError(f"{source}: file not found")
    if source.suffix in (".jsonl", ".json"):
        batches = _jsonl_batches(source, text_field, id_field, batch_rows)
    elif source.suffix == ".parquet":
        batches = _parquet_batches(source, text_field, id_field, batch_rows)
    else:
        raise ScanInputError(f"{source}: unsupported input, use .jsonl or .parquet")
    result = ScanResult()
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    with open(output, "w", encoding="utf-8") as out:
        for texts, ids in batches:
            for hit, row_id in zip(checker.check(texts), ids):
                line: dict[str, object] = {"row": result.n_rows}
                if row_id is not None:
                    line["id"] = row_id
                line["contaminated"] = hit is not None
                if hit is not None:
                    line.update(benchmark=hit.benchmark, item_id=hit.item_id, layer=hit.layer, reason=hit.reason, score=hit.score)
                    result.n_contaminated += 1
                    result.by_benchmark_layer[(hit.benchmark, hit.layer)] += 1
                out.write(json.dumps(line, ensure_ascii=False) + "\n")
                result.n_rows += 1
            if on_batch is not None:
                on_batch(result)
    return result

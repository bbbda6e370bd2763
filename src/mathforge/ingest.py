"""Ingest seed problems from JSONL, JSON, Parquet, CSV, saved `datasets` directories or the hub.

A field mapping in the config says which input field is the problem, the
answer, the solution and the id. Reference answers come from an answer field,
or are extracted from GSM8K-style (`#### 42`) or MATH-style (last `\\boxed{}`)
solutions. A row that cannot be used is quarantined with the file, the 1-based
row number, the field and a reason; it never stops the build.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any, Iterator, Literal

from pydantic import Field

from mathforge.section import Section
from mathforge.records import Problem, Quarantined, stable_id

RAW_LIMIT = 2000


class FieldMap(Section):
    """Names of the input fields that hold each part of a problem."""

    problem: str = Field(default="problem", description="Field with the problem statement.")
    answer: str | None = Field(default="answer", description="Field with the reference answer (None: take it from the solution).")
    solution: str | None = Field(default="solution", description="Field with a worked solution (optional in the data).")
    id: str | None = Field(default="id", description="Field with a stable id; None or absent: hash of the problem text.")


class SourceConfig(Section):
    """One input of seed problems."""

    path: str = Field(description="File or directory path, or a hub dataset name when format is 'hub'.")
    format: Literal["auto", "jsonl", "json", "parquet", "csv", "saved", "hub"] = Field(
        default="auto", description="'auto' picks by file extension ('saved' for directories)."
    )
    name: str | None = Field(default=None, description="Source label for the `source` column; default: file stem.")
    fields: FieldMap = Field(default_factory=FieldMap, description="Field mapping.")
    answer_from: Literal["answer", "gsm8k", "math"] = Field(
        default="answer",
        description="'answer': the answer field as is; 'gsm8k': the text after '####' in the answer (or solution) "
        "field; 'math': the last \\boxed{} of the solution (or answer) field.",
    )
    split: str = Field(default="train", description="Split to read from a saved DatasetDict or the hub.")
    limit: int | None = Field(default=None, ge=1, description="Keep only the first N valid problems of this source.")


class IngestConfig(Section):
    """Where seed problems come from and which rows are usable."""

    sources: list[SourceConfig] = Field(description="Inputs, read in order.")
    max_problems: int | None = Field(default=None, ge=1, description="Keep only the first N valid problems.")
    max_field_chars: int = Field(
        default=20_000, ge=100, description="Longest problem/answer/solution accepted, characters; longer rows are quarantined."
    )


def last_boxed(text: str) -> str | None:
    """Return the content of the last `\\boxed{...}` or `\\fbox{...}` in `text` (nested braces kept).

    >>> last_boxed(r"so \\boxed{\\frac{1}{2}} and \\boxed{3}")
    '3'
    """
    starts = [m.end() for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text)]
    for start in reversed(starts):
        depth = 1
        for position in range(start, len(text)):
            if text[position] == "{":
                depth += 1
            elif text[position] == "}":
                depth -= 1
                if depth == 0:
                    return text[start:position].strip()
    return None


def gsm8k_answer(text: str) -> str | None:
    """Return the final answer after `####` in a GSM8K solution, thousands separators removed.

    >>> gsm8k_answer("She pays 3 * 4 = 12.\\n#### 1,200")
    '1200'
    """
    match = re.search(r"####\s*(.+?)\s*$", text.strip())
    if not match:
        return None
    return match.group(1).replace(",", "").strip() or None


def _detect_format(path: Path, declared: str) -> str:
    if declared != "auto":
        return declared
    if path.is_dir():
        return "saved"
    suffix = path.suffix.lower()
    formats = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
    if suffix not in formats:
        raise ValueError(f"{path}: cannot tell the format from the extension {suffix!r}; set `format` in the source config")
    return formats[suffix]


RawRow = tuple[int, dict[str, Any] | None, str, str | None]  # (row number, record or None, raw text, error reason)


def _iter_jsonl(path: Path) -> Iterator[RawRow]:
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError:
                yield number, None, line.decode("utf-8", "replace"), "non_utf8"
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError:
                yield number, None, text, "invalid_json"
                continue
            if not isinstance(record, dict):
                yield number, None, text, "not_an_object"
                continue
            yield number, record, text, None


def _iter_csv(path: Path) -> Iterator[RawRow]:
    # surrogateescape keeps undecodable bytes visible so the row, not the file, is rejected.
    with path.open(encoding="utf-8", errors="surrogateescape", newline="") as handle:
        reader = csv.DictReader(handle)
        for number, record in enumerate(reader, start=2):
            raw = str(record)
            if any(isinstance(v, str) and re.search(r"[\udc80-\udcff]", v) for v in record.values()):
                yield number, None, raw.encode("utf-8", "replace").decode("utf-8"), "non_utf8"
                continue
            yield number, dict(record), raw, None


def _iter_records(records: list[dict[str, Any]]) -> Iterator[RawRow]:
    for number, record in enumerate(records, start=1):
        if not isinstance(record, dict):
            yield number, None, str(record), "not_an_object"
        else:
            yield number, record, json.dumps(record, ensure_ascii=False, default=str), None


def iter_rows(source: SourceConfig) -> Iterator[RawRow]:
    """Yield (row number, record, raw text, error) for every row of a source."""
    if source.format == "hub":
        import datasets

        try:
            dataset = datasets.load_dataset(source.path, split=source.split)
        except Exception as error:  # offline machines raise a variety of connection errors
            raise RuntimeError(f"cannot load hub dataset {source.path!r} (offline?): {error}") from error
        yield from _iter_records(dataset.to_list())
        return
    path = Path(source.path)
    if not path.exists():
        raise FileNotFoundError(f"seed source not found: {path}")
    kind = _detect_format(path, source.format)
    if kind == "jsonl":
        yield from _iter_jsonl(path)
    elif kind == "csv":
        yield from _iter_csv(path)
    elif kind == "json":
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, list):
            raise ValueError(f"{path}: a .json source must hold a list of objects")
        yield from _iter_records(data)
    elif kind == "parquet":
        import pyarrow.parquet as pq

        yield from _iter_records(pq.read_table(path).to_pylist())
    else:
        import datasets

        dataset = datasets.load_from_disk(str(path))
        if isinstance(dataset, datasets.DatasetDict):
            dataset = dataset[source.split]
        yield from _iter_records(dataset.to_list())


def _text_field(record: dict[str, Any], name: str | None) -> str | None:
    if name is None or record.get(name) is None:
        return None
    value = record[name]
    return value.strip() if isinstance(value, str) else str(value).strip()


def parse_row(record: dict[str, Any], source: SourceConfig, source_name: str, max_chars: int) -> tuple[Problem | None, str | None, str | None]:
    """Turn one input record into a Problem, or return (None, field, reason)."""
    fields = source.fields
    problem = _text_field(record, fields.problem)
    if not problem:
        return None, fields.problem, "missing_field" if fields.problem not in record else "empty_field"
    solution = _text_field(record, fields.solution)
    answer_text = _text_field(record, fields.answer)
    if source.answer_from == "answer":
        answer, answer_field = answer_text, fields.answer
    elif source.answer_from == "gsm8k":
        answer_field = fields.answer if answer_text else fields.solution
        answer = gsm8k_answer(answer_text or solution or "")
        if answer_text and solution is None:
            solution = answer_text  # GSM8K keeps the worked solution in its answer field
    else:
        answer_field = fields.solution if solution else fields.answer
        answer = last_boxed(solution or answer_text or "")
    if not answer:
        present = any(name is not None and name in record for name in (fields.answer, fields.solution))
        return None, answer_field, "empty_answer" if present else "missing_answer"
    for name, value in (("problem", problem), ("answer", answer), ("solution", solution)):
        if value is not None and len(value) > max_chars:
            return None, getattr(fields, name) or name, "field_too_long"
    raw_id = _text_field(record, fields.id)
    problem_id = f"{source_name}-{raw_id}" if raw_id else f"{source_name}-{stable_id(problem, length=12)}"
    return (
        Problem(problem_id=problem_id, problem=problem, answer=answer, source=source_name, solution=solution),
        None,
        None,
    )


def read_source(
    source: SourceConfig, *, max_field_chars: int = 20_000, seen_ids: set[str] | None = None
) -> tuple[list[Problem], list[Quarantined]]:
    """Read one source: valid problems, and quarantined rows with reasons.

    `seen_ids` (updated in place) holds problem ids taken by earlier sources;
    a row repeating one is quarantined as `duplicate_id`.
    """
    source_name = source.name or Path(source.path).stem
    seen = seen_ids if seen_ids is not None else set()
    problems: list[Problem] = []
    quarantined: list[Quarantined] = []
    for number, record, raw, error in iter_rows(source):
        if source.limit is not None and len(problems) >= source.limit:
            break
        field = None
        if record is not None:
            problem, field, error = parse_row(record, source, source_name, max_field_chars)
            if problem is not None and problem.problem_id in seen:
                field, error = source.fields.id or source.fields.problem, "duplicate_id"
            elif problem is not None:
                seen.add(problem.problem_id)
                problems.append(problem)
                continue
        quarantined.append(
            Quarantined(source_file=source.path, row_number=number, field=field, reason=error or "invalid_row", raw=raw[:RAW_LIMIT])
        )
    return problems, quarantined


def ingest(config: IngestConfig) -> tuple[list[Problem], list[Quarantined]]:
    """Read every source in order: valid problems (first `max_problems`) and quarantined rows."""
    problems: list[Problem] = []
    quarantined: list[Quarantined] = []
    seen: set[str] = set()
    for source in config.sources:
        found, bad = read_source(source, max_field_chars=config.max_field_chars, seen_ids=seen)
        problems.extend(found)
        quarantined.extend(bad)
    if config.max_problems is not None:
        problems = problems[: config.max_problems]
    return problems, quarantined

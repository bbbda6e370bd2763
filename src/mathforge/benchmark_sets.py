"""Benchmark test sets as items with a reference answer: local files, or standard benchmarks by name.

A benchmark item is `item_id`, `problem`, `answer` and, where the benchmark
has them, `subject` and `level` (`records.BenchmarkItem`). Sources:

- local JSON-lines (.jsonl/.json), Parquet files, or `datasets.save_to_disk`
  directories. Fields are recognized by name: the problem is the first of
  `problem`/`question`/`Problem`/`Question`; the answer comes from an
  `answer` field (a GSM8K answer is reduced to what follows its `####`), else
  from the last `\\boxed{}` of a `solution` field (MATH style); the id from
  `id`/`unique_id`/`item_id`/`idx`, else `<name>-<row>`; the subject from
  `subject`/`type`; the level from `level` ("Level 3" becomes "3").
- standard benchmarks by registry name (`BENCHMARKS`: gsm8k, math500, math,
  aime24, amc23, olympiadbench, minerva, svamp, asdiv), read from the
  Hugging Face hub through `datasets` — only when online; their field
  mappings are declared here, once.

A row that yields no problem or no answer is an error naming the file, the
row (1-based) and the field: a benchmark with a silently dropped item would
report a wrong accuracy.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from mathforge.records import BENCHMARK_ITEM_SCHEMA, BenchmarkItem, to_table
from mathforge.verify.extract import last_boxed

AnswerFormat = Literal["auto", "plain", "gsm8k", "boxed_solution"]

PROBLEM_FIELDS = ("problem", "question", "Problem", "Question")
ID_FIELDS = ("id", "unique_id", "item_id", "idx", "ID")
SUBJECT_FIELDS = ("subject", "type")
_LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet")
_SPLIT_NAMES = frozenset({"test", "train", "validation", "dev", "valid"})
_LEVEL = re.compile(r"(?i)^\s*level\s+")


class BenchmarkSetError(ValueError):
    """A benchmark could not be read; the message names the source, the row and the field."""


@dataclass(frozen=True)
class HubBenchmark:
    """Where a standard benchmark lives on the hub and how its fields map to an item."""

    repo: str
    split: str
    problem_field: str
    answer_field: str
    answer_format: AnswerFormat
    config: str | None = None
    id_field: str | None = None
    subject_field: str | None = None
    level_field: str | None = None
    context_field: str | None = None
    """Prepended to the problem (SVAMP's and ASDiv's body + question)."""


#: Standard benchmarks by name; read through `datasets.load_dataset` (online only).
BENCHMARKS: dict[str, HubBenchmark] = {
    "gsm8k": HubBenchmark("openai/gsm8k", "test", "question", "answer", "gsm8k", config="main"),
    "math500": HubBenchmark(
        "HuggingFaceH4/MATH-500", "test", "problem", "answer", "plain",
        id_field="unique_id", subject_field="subject", level_field="level",
    ),
    "math": HubBenchmark(
        "DigitalLearningGmbH/MATH-lighteval", "test", "problem", "solution", "boxed_solution",
        subject_field="type", level_field="level",
    ),
    "aime24": HubBenchmark("HuggingFaceH4/aime_2024", "train", "problem", "answer", "plain", id_field="id"),
    "amc23": HubBenchmark("math-ai/amc23", "test", "question", "answer", "plain", id_field="id"),
    "olympiadbench": HubBenchmark(
        "Hothan/OlympiadBench", "train", "question", "final_answer", "plain",
        config="OE_TO_maths_en_COMP", id_field="id", subject_field="subfield",
    ),
    "minerva": HubBenchmark("math-ai/minervamath", "test", "question", "answer", "plain"),
    "svamp": HubBenchmark("ChilleD/SVAMP", "test", "Question", "Answer", "plain", id_field="ID", context_field="Body"),
    "asdiv": HubBenchmark(
        "EleutherAI/asdiv", "validation", "question", "answer", "plain", context_field="body", subject_field="solution_type",
    ),
}


@dataclass(frozen=True)
class BenchmarkSet:
    """The items of one benchmark, in source order."""

    name: str
    source: str
    items: tuple[BenchmarkItem, ...]

    def to_table(self) -> pa.Table:
        """The items as a table with `records.BENCHMARK_ITEM_SCHEMA`."""
        return to_table(list(self.items), BENCHMARK_ITEM_SCHEMA)

    @property
    def has_subjects(self) -> bool:
        """Whether any item names a subject."""
        return any(item.subject for item in self.items)

    @property
    def has_levels(self) -> bool:
        """Whether any item names a level."""
        return any(item.level for item in self.items)


def load_benchmark_set(
    source: str | Path,
    *,
    limit: int | None = None,
    split: str = "test",
    answer_format: AnswerFormat = "auto",
    name: str | None = None,
    require_answer: bool = True,
) -> BenchmarkSet:
    """Read a benchmark from a local file or directory, or a registry name (hub, online only).

    Args:
        source: a .jsonl/.json/.parquet file, a `save_to_disk` directory, or a
            key of `BENCHMARKS`.
        limit: keep only the first `limit` items (None: all).
        split: split read from a saved DatasetDict (registry names carry their own).
        answer_format: 'auto' (see the module docstring), 'plain' (the `answer`
            field as is), 'gsm8k' (after `####`), 'boxed_solution' (the last
            `\\boxed{}` of `solution`).
        name: benchmark name in results (default: the registry name, else the file stem or
            directory name, prefixed by the parent directory when it is a split name: 'gsm8k-test').
        require_answer: False accepts items without an answer (answer ''): decontamination
            needs only the problem text.

    Raises:
        BenchmarkSetError: naming the source, row and field.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    path = Path(source)
    if path.exists():
        records = _read_local(path, split)
        spec = None
        name = name or _local_name(path)
    elif str(source) in BENCHMARKS:
        spec = BENCHMARKS[str(source)]
        records = _read_hub(str(source), spec)
        name = name or str(source)
    elif path.suffix in _LOCAL_SUFFIXES or str(source).startswith((".", "/", "~")):
        raise BenchmarkSetError(f"benchmark file not found: {source}")
    else:
        raise BenchmarkSetError(f"{source!r} is neither a local file nor a known benchmark ({', '.join(BENCHMARKS)})")
    if not records:
        raise BenchmarkSetError(f"{source}: no items")
    if limit is not None:
        records = records[:limit]
    items = tuple(
        _item(record, row, source=str(source), name=name, spec=spec, answer_format=answer_format, require_answer=require_answer)
        for row, record in enumerate(records, start=1)
    )
    seen: dict[str, int] = {}
    for row, item in enumerate(items, start=1):
        if item.item_id in seen:
            raise BenchmarkSetError(f"{source}: row {row}: id: {item.item_id!r} repeats row {seen[item.item_id]}")
        seen[item.item_id] = row
    return BenchmarkSet(name=name, source=str(source), items=items)


def _local_name(path: Path) -> str:
    """A local benchmark's name: the file stem, prefixed by its directory when the stem is a split name.

    >>> _local_name(Path("data/gsm8k/test.jsonl")), _local_name(Path("data/demo_benchmark.jsonl"))
    ('gsm8k-test', 'demo_benchmark')
    """
    stem = path.stem if path.is_file() or path.suffix in _LOCAL_SUFFIXES else path.name
    if stem in _SPLIT_NAMES and path.parent.name:
        return f"{path.parent.name}-{stem}"
    return stem


def gsm8k_answer(text: str) -> str | None:
    """The final answer of a GSM8K solution: what follows `####`, thousands separators removed.

    >>> gsm8k_answer("3 * 4 = <<3*4=12>>12 apples\\n#### 1,212")
    '1212'
    """
    _, marker, answer = text.rpartition("####")
    if not marker or not answer.strip():
        return None
    return answer.strip().replace(",", "")


def boxed_answer(solution: str) -> str | None:
    r"""The content of a solution's last `\boxed{}` (MATH style).

    >>> boxed_answer(r"So $x = \boxed{\frac{1}{2}}$.")
    '\\frac{1}{2}'
    """
    found = last_boxed(solution)
    return found[1].strip() if found and found[1].strip() else None


def _text(value: Any) -> str | None:
    """A scalar field as text; a one-element list (OlympiadBench's final_answer) as its element."""
    if isinstance(value, (list, tuple)):
        value = value[0] if len(value) == 1 else ", ".join(str(v) for v in value) if value else None
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


def _strip_math(answer: str) -> str:
    """Drop one pair of surrounding `$` (OlympiadBench writes `$3$`)."""
    if len(answer) > 2 and answer.startswith("$") and answer.endswith("$"):
        return answer[1:-1].strip()
    return answer


def _item(
    record: dict[str, Any],
    row: int,
    *,
    source: str,
    name: str,
    spec: HubBenchmark | None,
    answer_format: AnswerFormat,
    require_answer: bool = True,
) -> BenchmarkItem:
    """One record as a BenchmarkItem, or a BenchmarkSetError naming source, row and field."""
    where = f"{source}: row {row}"
    if not isinstance(record, dict):
        raise BenchmarkSetError(f"{where}: expected an object, got {type(record).__name__}")
    if spec is not None:
        problem_field, answer_field = spec.problem_field, spec.answer_field
        answer_format = spec.answer_format if answer_format == "auto" else answer_format
        id_field, subject_field, level_field = spec.id_field, spec.subject_field, spec.level_field
    else:
        problem_field = next((f for f in PROBLEM_FIELDS if f in record), PROBLEM_FIELDS[0])
        answer_field = "answer" if "answer" in record or answer_format != "boxed_solution" else "solution"
        id_field = next((f for f in ID_FIELDS if f in record), None)
        subject_field = next((f for f in SUBJECT_FIELDS if f in record), None)
        level_field = "level" if "level" in record else None
    problem = _text(record.get(problem_field))
    if problem is None:
        raise BenchmarkSetError(f"{where}: {problem_field}: missing or empty problem (fields: {sorted(record)})")
    if spec is not None and spec.context_field and _text(record.get(spec.context_field)):
        problem = f"{_text(record[spec.context_field])} {problem}"
    answer, answer_field = _answer(record, answer_field, answer_format)
    if answer is None and not require_answer:
        answer = ""
    if answer is None:
        raise BenchmarkSetError(f"{where}: {answer_field}: no answer ({_answer_hint(answer_format)})")
    item_id = _text(record.get(id_field)) if id_field else None
    level = _text(record.get(level_field)) if level_field else None
    return BenchmarkItem(
        benchmark=name,
        item_id=item_id or f"{name}-{row - 1}",
        problem=problem,
        answer=_strip_math(answer),
        subject=_text(record.get(subject_field)) if subject_field else None,
        level=_LEVEL.sub("", level) if level else None,
    )


def _answer(record: dict[str, Any], field: str, answer_format: AnswerFormat) -> tuple[str | None, str]:
    """The reference answer and the field it came from, by `answer_format`."""
    if answer_format == "boxed_solution":
        field = field if field in record and field != "answer" else "solution"
        text = _text(record.get(field))
        return (boxed_answer(text) if text else None), field
    text = _text(record.get(field))
    if answer_format == "gsm8k" or (answer_format == "auto" and text and "####" in text):
        return (gsm8k_answer(text) if text else None), field
    if text is None and answer_format == "auto" and _text(record.get("solution")):
        return boxed_answer(_text(record["solution"]) or ""), "solution"
    return text, field


def _answer_hint(answer_format: AnswerFormat) -> str:
    return {
        "gsm8k": "a GSM8K answer must end with '#### <answer>'",
        "boxed_solution": "the solution has no \\boxed{} answer",
        "plain": "the field is missing or empty",
        "auto": "expected an 'answer' field, a GSM8K '####' answer or a solution with \\boxed{}",
    }[answer_format]


def _read_local(path: Path, split: str) -> list[dict[str, Any]]:
    """Records of a JSON-lines or Parquet file, or of a saved dataset directory."""
    if path.is_dir():
        import datasets

        try:
            loaded = datasets.load_from_disk(str(path))
        except (FileNotFoundError, ValueError) as error:
            raise BenchmarkSetError(f"{path}: not a datasets.save_to_disk directory: {error}") from None
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise BenchmarkSetError(f"{path}: has splits {sorted(loaded)}, not {split!r}")
            loaded = loaded[split]
        return loaded.to_list()
    if path.suffix == ".parquet":
        return pq.read_table(path).to_pylist()
    if path.suffix in (".jsonl", ".json"):
        records = []
        with open(path, encoding="utf-8") as handle:
            for row, line in enumerate(handle, start=1):
                if line.strip():
                    try:
                        records.append(json.loads(line))
                    except json.JSONDecodeError as error:
                        raise BenchmarkSetError(f"{path}: row {row}: invalid JSON: {error}") from None
        return records
    raise BenchmarkSetError(f"{path}: unsupported file type; use {', '.join(_LOCAL_SUFFIXES)} or a saved dataset")


def _read_hub(name: str, spec: HubBenchmark) -> list[dict[str, Any]]:
    """Records of a registry benchmark's split, from the hub (online only)."""
    import datasets

    try:
        return datasets.load_dataset(spec.repo, spec.config, split=spec.split).to_list()
    except Exception as error:  # the hub client raises many types (connection, offline mode, missing repo)
        raise BenchmarkSetError(
            f"benchmark {name!r} ({spec.repo}) could not be loaded from the hub (offline?): {error}"
        ) from None


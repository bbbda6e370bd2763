"""benchmark_sets: local files in every format, answer extraction, clear errors for bad rows."""

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mathforge.benchmark_sets import BenchmarkSetError, load_benchmark_set
from mathforge.records import BENCHMARK_ITEM_SCHEMA

REPO = Path(__file__).resolve().parents[1]
MINI = REPO / "data" / "benchmarks" / "mini_math.jsonl"
REAL = Path("/work/shared/data")


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_math_style_file_takes_boxed_answers_subjects_and_levels():
    bench = load_benchmark_set(MINI)
    assert bench.name == "mini_math"
    assert [item.answer for item in bench.items] == ["56", "4", r"\frac{5}{6}", "9", "2", "13"]
    assert bench.items[0].subject == "Prealgebra" and bench.items[0].level == "1"
    assert bench.has_subjects and bench.has_levels
    assert bench.to_table().schema == BENCHMARK_ITEM_SCHEMA


def test_gsm8k_answers_and_row_ids(tmp_path):
    path = _write(
        tmp_path / "test.jsonl",
        [{"question": "2+2?", "answer": "2+2=<<2+2=4>>4\n#### 4"}, {"question": "Big?", "answer": "#### 1,234"}],
    )
    bench = load_benchmark_set(path)
    assert bench.name == f"{tmp_path.name}-test"
    assert [(i.item_id, i.answer) for i in bench.items] == [(f"{bench.name}-0", "4"), (f"{bench.name}-1", "1234")]


def test_parquet_saved_dataset_and_limit(tmp_path):
    import datasets

    rows = [{"id": f"q{i}", "problem": f"{i}+1?", "answer": str(i + 1)} for i in range(5)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "b.parquet")
    datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)}).save_to_disk(str(tmp_path / "saved"))
    assert [i.answer for i in load_benchmark_set(tmp_path / "b.parquet", limit=2).items] == ["1", "2"]
    assert [i.item_id for i in load_benchmark_set(tmp_path / "saved").items] == [f"q{i}" for i in range(5)]
    with pytest.raises(BenchmarkSetError, match="splits"):
        load_benchmark_set(tmp_path / "saved", split="train")


@pytest.mark.parametrize(
    "rows,message",
    [
        ([{"problem": "a?", "answer": "1"}, {"problem": "b?"}], r"row 2: answer: no answer"),
        ([{"problem": "", "answer": "1"}], r"row 1: problem: missing or empty"),
        ([{"question": "a?", "answer": "no marker"}], None),
        ([{"problem": "a?", "solution": "no box here"}], r"row 1: solution: no answer"),
        ([{"id": "x", "problem": "a?", "answer": "1"}, {"id": "x", "problem": "b?", "answer": "2"}], r"row 2: id: 'x' repeats row 1"),
    ],
    ids=["missing-answer", "empty-problem", "plain-answer-ok", "solution-without-box", "duplicate-id"],
)
def test_bad_rows_name_file_row_and_field(tmp_path, rows, message):
    path = _write(tmp_path / "bench.jsonl", rows)
    if message is None:
        assert load_benchmark_set(path).items[0].answer == "no marker"
        return
    with pytest.raises(BenchmarkSetError, match=message) as error:
        load_benchmark_set(path)
    assert str(path) in str(error.value)


def test_invalid_json_and_missing_or_unknown_sources(tmp_path):
    path = tmp_path / "bench.jsonl"
    path.write_text('{"problem": "a?", "answer": "1"}\n{broken\n')
    with pytest.raises(BenchmarkSetError, match="row 2: invalid JSON"):
        load_benchmark_set(path)
    with pytest.raises(BenchmarkSetError, match="not found"):
        load_benchmark_set(tmp_path / "absent.jsonl")
    with pytest.raises(BenchmarkSetError, match="neither a local file nor a known benchmark"):
        load_benchmark_set("no-such-benchmark")


@pytest.mark.skipif(not (REAL / "math500" / "test.jsonl").exists(), reason="real MATH-500 not on this machine")
def test_real_math500_has_subjects_and_levels():
    bench = load_benchmark_set(REAL / "math500" / "test.jsonl")
    assert len(bench.items) == 500 and bench.name == "math500-test"
    assert {item.level for item in bench.items} == {"1", "2", "3", "4", "5"}
    assert all(item.subject for item in bench.items)

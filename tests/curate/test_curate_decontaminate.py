"""Decontamination: planted leaks are caught, shared phrases are not, and benchmarks load from every format."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mathforge.curate import (
    Benchmark,
    BenchmarkLoadError,
    DecontaminationConfig,
    count_by_benchmark,
    decontaminate,
    load_benchmark,
)

REPO = Path(__file__).resolve().parents[2]
ITEMS = {
    "t1": "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May?",
    "t2": "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. How much did she earn?",
    "t3": "Compute $\\dbinom{8}{4}$.",
}
BENCHMARK = Benchmark(name="toy", item_ids=tuple(ITEMS), texts=tuple(ITEMS.values()))
# GPT-3's n-gram rule alone (with the exact layer), as the stage had it before the other layers.
NGRAM = DecontaminationConfig(layers=("exact", "ngram"))


def problems(*texts: str) -> pa.Table:
    return pa.table({"problem_id": [f"p{i}" for i in range(len(texts))], "problem": list(texts)})


@pytest.mark.parametrize(
    "leak",
    [
        "natalia sold CLIPS to 48 of her friends in April and then she sold half as many hair clips in May. How many altogether?",
        "Here is a warm-up. Weng earns $12 an hour for babysitting; yesterday she just did 50 minutes of babysitting. "
        "How much money did Weng earn?",
    ],
    ids=["case-punctuation-and-an-inserted-word", "prefix-and-changed-question"],
)
def test_a_benchmark_item_embedded_with_small_edits_is_caught(leak: str) -> None:
    result = decontaminate(problems(leak), [BENCHMARK], NGRAM)
    assert result.counts == {"benchmark_ngram_overlap": 1}
    (row,) = result.rejected.to_pylist()
    assert (row["benchmark"], row["layer"]) == ("toy", "ngram") and row["benchmark_item_id"] in ITEMS
    assert 0 < row["score"] <= 1
    detail = json.loads(row["detail"])
    assert detail["column"] == "problem" and len(detail["match"].split()) == 13
    assert detail["item_text"] == ITEMS[row["benchmark_item_id"]]


def test_distinct_problems_sharing_common_phrases_are_not_flagged() -> None:
    distinct = [
        "Maria sold cookies to 30 of her classmates in June. How many cookies did Maria sell altogether in June and July?",
        "Tom earns $15 an hour for mowing lawns. How much did he earn after working 3 hours?",
        "Compute the sum of 8 and 4.",
    ]
    assert decontaminate(problems(*distinct), [BENCHMARK], NGRAM).counts == {}


def test_ngram_length_is_configurable() -> None:
    overlap_of_10 = "Weng earns $12 an hour for babysitting. Yesterday she worked in the garden for hours."
    assert decontaminate(problems(overlap_of_10), [BENCHMARK], NGRAM).counts == {}
    assert decontaminate(problems(overlap_of_10), [BENCHMARK], NGRAM.model_copy(update={"ngram": 8})).counts == {"benchmark_ngram_overlap": 1}


def test_short_texts_match_as_exact_token_substrings() -> None:
    table = problems(
        "First compute $\\dbinom{8}{4}$, then add 3.",  # contains the short item t3
        "How much did she earn?",  # a short row contained in t2
        "Compute $\\dbinom{9}{4}$.",  # short, different numbers
        "She earn?",  # shorter than min_short_tokens: too generic to judge
    )
    result = decontaminate(table, [BENCHMARK], NGRAM)
    assert result.kept.column("problem_id").to_pylist() == ["p2", "p3"]
    assert set(result.rejected.column("reason").to_pylist()) == {"benchmark_exact_substring"}
    matches = {r["row_id"]: json.loads(r["detail"])["match"] for r in result.rejected.to_pylist()}
    assert matches == {"p0": "compute dbinom 8 4", "p1": "how much did she earn"}


def test_boilerplate_shared_by_many_items_is_ignored() -> None:
    instruction = "Think step by step and put your final answer within a box at the very end of your reply."
    items = tuple(f"{instruction} What is {i} plus {i + 1}?" for i in range(12))
    benchmark = Benchmark(name="templated", item_ids=tuple(map(str, range(12))), texts=items)
    row = problems(f"{instruction} A shop has 7 red pens and 5 blue pens. How many pens are there?")
    assert decontaminate(row, [benchmark], NGRAM).counts == {}
    assert decontaminate(row, [benchmark], NGRAM.model_copy(update={"max_item_frequency": 20})).counts == {"benchmark_ngram_overlap": 1}


def test_configured_columns_are_checked_and_the_row_id_is_the_sample_id(make_samples) -> None:
    table = make_samples({"sample_id": "s1", "response": "Restating: " + ITEMS["t1"] + " The answer is 72."})
    assert decontaminate(table, [BENCHMARK], NGRAM).counts == {}
    result = decontaminate(table, [BENCHMARK], NGRAM, columns=("problem", "response"))
    assert result.rejected.column("row_id").to_pylist() == ["s1"]
    assert json.loads(result.rejected.column("detail")[0].as_py())["column"] == "response"
    assert count_by_benchmark(result.rejected) == {"toy": 1}


def test_the_demo_benchmark_leaks_exactly_two_seed_problems() -> None:
    seeds = [
        json.loads(line)
        for name in ("grade_school.jsonl", "competition.jsonl")
        for line in (REPO / "data" / "seeds" / name).open()
    ]
    table = pa.table({"problem_id": [s["id"] for s in seeds], "problem": [s["problem"] for s in seeds]})
    demo = load_benchmark(REPO / "data" / "benchmarks" / "demo_benchmark.jsonl")
    assert len(demo.texts) == 30
    result = decontaminate(table, [demo], NGRAM)
    assert sorted(result.rejected.column("row_id").to_pylist()) == ["gs-002", "gs-004"]


def test_benchmarks_load_from_jsonl_parquet_and_saved_datasets(tmp_path: Path) -> None:
    records = [{"question": "What is 2 plus 2?", "answer": "4"}, {"question": "What is 3 plus 5?", "answer": "8"}]
    jsonl = tmp_path / "gsm.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    from_jsonl = load_benchmark(jsonl)
    assert (from_jsonl.name, from_jsonl.item_ids, from_jsonl.texts[1]) == ("gsm", ("0", "1"), "What is 3 plus 5?")

    parquet = tmp_path / "math.parquet"
    pq.write_table(pa.Table.from_pylist([{"id": "m1", "problem": "Find x.", "question": "ignored"}]), parquet)
    assert load_benchmark(parquet).item_ids == ("m1",) and load_benchmark(parquet).texts == ("Find x.",)

    datasets.DatasetDict({"test": datasets.Dataset.from_list(records)}).save_to_disk(tmp_path / "saved")
    assert load_benchmark(tmp_path / "saved").texts == from_jsonl.texts
    with pytest.raises(BenchmarkLoadError, match="splits"):
        load_benchmark(tmp_path / "saved", split="validation")


@pytest.mark.parametrize(
    ("content", "fields", "message"),
    [
        (None, ("problem",), "not found"),
        ('{"problem": "ok"}\nnot json\n', ("problem",), "gsm.jsonl:2: invalid JSON"),
        ('{"text": "x"}\n', ("problem", "question"), "none of the fields"),
    ],
    ids=["missing-file", "invalid-json-line", "no-text-field"],
)
def test_bad_benchmark_files_raise_errors_naming_the_problem(tmp_path: Path, content, fields, message) -> None:
    path = tmp_path / "gsm.jsonl"
    if content is not None:
        path.write_text(content)
    with pytest.raises(BenchmarkLoadError, match=message):
        load_benchmark(path, text_fields=fields)


def test_a_hub_name_offline_raises_a_clear_error() -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    code = (
        "from mathforge.curate.decontaminate import load_benchmark, BenchmarkLoadError\n"
        "try:\n    load_benchmark('someone/no-such-benchmark')\n"
        "except BenchmarkLoadError as error:\n    print(error)\n"
    )
    completed = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert "could not be loaded from the hub (offline?)" in completed.stdout, completed.stderr


def test_decontaminate_validates_its_arguments() -> None:
    with pytest.raises(ValueError, match="at least one Benchmark"):
        decontaminate(problems("x"), [])
    with pytest.raises(KeyError, match="response"):
        decontaminate(problems("x"), [BENCHMARK], NGRAM, columns=("response",))
    with pytest.raises(ValueError):
        DecontaminationConfig(ngram=2)

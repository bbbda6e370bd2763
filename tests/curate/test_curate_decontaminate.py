"""Decontamination: planted leaks are caught, shared phrases are not, and benchmarks load from every format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from mathforge.benchmark_sets import BenchmarkSet, load_benchmark_set
from mathforge.curate import (
    DecontaminationConfig,
    Decontaminator,
    count_by_benchmark,
    decontaminate,
    load_benchmarks,
)
from mathforge.curate.llm_check import LLMCheckConfig, parse_verdict
from mathforge.curate.retrieval import EmbeddingIndex
from mathforge.curate.rewrites import change_numbers, reword
from mathforge.generation import ScriptedGenerator
from mathforge.records import BenchmarkItem

REPO = Path(__file__).resolve().parents[2]
ITEMS = {
    "t1": "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May?",
    "t2": "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. How much did she earn?",
    "t3": "Compute $\\dbinom{8}{4}$.",
}


def benchmark_set(name: str, items: dict[str, str]) -> BenchmarkSet:
    return BenchmarkSet(
        name=name,
        source=name,
        items=tuple(BenchmarkItem(benchmark=name, item_id=i, problem=text, answer="") for i, text in items.items()),
    )


BENCHMARK = benchmark_set("toy", ITEMS)
# GPT-3's n-gram rule alone (with the exact layer), as the stage had it before the other layers.
NGRAM = DecontaminationConfig(layers=("exact", "ngram"))
UNRELATED = "A garden is 12 meters long and 5 meters wide. What is its area in square meters?"


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
    benchmark = benchmark_set("templated", dict(zip(map(str, range(12)), items)))
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
    (demo,) = load_benchmarks(DecontaminationConfig(benchmarks=(str(REPO / "data" / "benchmarks" / "demo_benchmark.jsonl"),)))
    assert len(demo.items) == 30
    assert sorted(decontaminate(table, [demo], NGRAM).rejected.column("row_id").to_pylist()) == ["gs-002", "gs-004"]
    # Every layer together flags no other seed: the embedding layer does not mistake a similar setting for a copy.
    assert sorted(decontaminate(table, [demo]).rejected.column("row_id").to_pylist()) == ["gs-002", "gs-004"]


def test_benchmarks_without_answers_load_for_decontamination(tmp_path: Path) -> None:
    path = tmp_path / "held_out.jsonl"
    path.write_text(json.dumps({"id": "h1", "question": ITEMS["t2"]}) + "\n")
    (loaded,) = load_benchmarks(DecontaminationConfig(benchmarks=(str(path),)))
    assert (loaded.name, loaded.items[0].item_id, loaded.items[0].answer) == ("held_out", "h1", "")


def test_exact_layer_matches_the_whole_normalized_text() -> None:
    copy = "  NATALIA sold clips to 48 of her friends in April and then she sold half as many clips in May; "
    copy += "how many clips did Natalia sell altogether in April and May"
    result = decontaminate(problems(copy, ITEMS["t1"] + " Show your work."), [BENCHMARK], NGRAM)
    rows = {row["row_id"]: row for row in result.rejected.to_pylist()}
    assert (rows["p0"]["reason"], rows["p0"]["layer"], rows["p0"]["score"]) == ("benchmark_exact_match", "exact", 1.0)
    assert rows["p1"]["layer"] == "ngram"  # not the whole text: overlap, not an exact match


def test_numbers_masked_ngrams_catch_a_copy_with_changed_numbers() -> None:
    copy = change_numbers(ITEMS["t2"])
    assert copy != ITEMS["t2"]
    assert decontaminate(problems(copy), [BENCHMARK], NGRAM).counts == {}  # every 13-gram of t2 holds a number
    masked = DecontaminationConfig(layers=("exact", "ngram", "ngram_masked"))
    (row,) = decontaminate(problems(copy), [BENCHMARK], masked).rejected.to_pylist()
    assert (row["reason"], row["benchmark_item_id"], row["layer"]) == ("benchmark_ngram_overlap_numbers_masked", "t2", "ngram_masked")
    short = change_numbers(ITEMS["t3"])  # no short-text rule on masked text: it would match every binomial
    assert decontaminate(problems(short), [BENCHMARK], masked).counts == {}


def test_embedding_layer_catches_reworded_copies_and_keeps_unrelated_problems() -> None:
    reworded = change_numbers(reword(ITEMS["t1"]))
    table = problems(reworded, UNRELATED)
    no_embedding = DecontaminationConfig(layers=("exact", "ngram", "ngram_masked"))
    assert decontaminate(table, [BENCHMARK], no_embedding).counts == {}
    result = decontaminate(table, [BENCHMARK])
    (row,) = result.rejected.to_pylist()
    assert (row["row_id"], row["layer"], row["benchmark_item_id"]) == ("p0", "embedding", "t1")
    assert DecontaminationConfig().embedding.threshold <= row["score"] <= 1.0
    assert json.loads(row["detail"])["item_text"] == ITEMS["t1"]


def test_the_benchmark_index_is_built_once_per_content_hash(tmp_path: Path) -> None:
    config = DecontaminationConfig().embedding.model_copy(update={"cache_dir": str(tmp_path)})
    first = EmbeddingIndex.build(list(ITEMS.values()), config)
    (path,) = (tmp_path / "decontamination").glob("*.npy")
    np.save(path, -first.vectors)  # a rebuild that encoded again would not see this
    assert np.array_equal(EmbeddingIndex.build(list(ITEMS.values()), config).vectors, -first.vectors)
    EmbeddingIndex.build([*ITEMS.values(), UNRELATED], config)
    assert len(list((tmp_path / "decontamination").glob("*.npy"))) == 2
    items, cosines = first.nearest([ITEMS["t2"], UNRELATED])
    assert items[0] == 1 and cosines[0] == pytest.approx(1.0, abs=1e-4) and cosines[1] < 0.5


def test_llm_confirms_or_clears_embedding_candidates() -> None:
    reworded = reword(ITEMS["t1"])
    similar = "Natalia sold 48 clips in April. How many clips will she sell in June if she doubles her sales each month?"
    asked: list[str] = []

    def script(prompt: str, index: int, params) -> str:
        asked.append(prompt)
        return "True" if reworded in prompt else "False, they ask different things."

    config = DecontaminationConfig(layers=("embedding",), llm=LLMCheckConfig(enabled=True, min_cosine=0.5))
    checker = Decontaminator([BENCHMARK], config, generator=ScriptedGenerator(script=script))
    result = decontaminate(problems(reworded, similar, UNRELATED), checker)
    (row,) = result.rejected.to_pylist()
    assert (row["row_id"], row["reason"], row["layer"]) == ("p0", "benchmark_llm_confirmed", "llm")
    assert json.loads(row["detail"])["llm_reply"] == "True"
    assert len(asked) == 2 and all(ITEMS["t1"] in prompt for prompt in asked)  # the unrelated row is no candidate
    assert dict(checker.stats) == {"llm_candidates": 2, "llm_confirmed": 1, "llm_cleared": 1}
    with pytest.raises(ValueError, match="needs a generator"):
        Decontaminator([BENCHMARK], config)


@pytest.mark.parametrize(
    ("reply", "expected"),
    [("True", True), ("false.", False), ("Yes, same problem", True), ("No", False), ("I cannot tell", None)],
    ids=["true", "false", "yes", "no", "unparsable"],
)
def test_llm_verdicts_are_parsed(reply: str, expected: bool | None) -> None:
    assert parse_verdict(reply) is expected


def test_decontaminate_validates_its_arguments() -> None:
    with pytest.raises(ValueError, match="at least one BenchmarkSet"):
        decontaminate(problems("x"), [])
    with pytest.raises(KeyError, match="response"):
        decontaminate(problems("x"), [BENCHMARK], NGRAM, columns=("response",))
    with pytest.raises(ValueError):
        DecontaminationConfig(ngram=2)

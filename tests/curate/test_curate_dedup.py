"""Exact and near-duplicate removal: what counts as a duplicate, what is kept, and the MinHash maths."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from datasketch import MinHash
from pydantic import ValidationError

from mathforge.curate import DedupConfig, dedup_exact, dedup_near, minhash_signatures
from mathforge.curate.dedup import fold_to_32_bits
from mathforge.curate.text import shingle_sets, tokenize

BAKERY = (
    "A bakery sells 24 muffins every morning and 18 muffins every afternoon. "
    "Each muffin costs $3. How much money does the bakery make in one day from muffins?"
)
BAKERY_EDITED = (
    "Please solve: a bakery sells 24 muffins each morning and 18 muffins every afternoon. "
    "Every muffin costs $3. How much money does the bakery make in one day from the muffins?"
)
BAKERY_OTHER_NUMBERS = BAKERY.replace("24", "30").replace("$3", "$4")
GARDEN = "A garden is 12 meters long and 5 meters wide. What is its area in square meters?"


def detail(result, row_id: str) -> dict:
    rows = [r for r in result.rejected.to_pylist() if r["row_id"] == row_id]
    assert len(rows) == 1, f"{row_id} not rejected once"
    return rows[0] | {"detail": json.loads(rows[0]["detail"])}


@pytest.mark.parametrize(("num_perm", "seed"), [(128, 1), (64, 7)])
def test_signatures_equal_datasketch_minhash(num_perm: int, seed: int) -> None:
    texts = [BAKERY, BAKERY_EDITED, "x", ""]
    ours = minhash_signatures(texts, shingle_size=2, num_perm=num_perm, seed=seed)
    shingles, offsets = shingle_sets(tokenize(texts), 2)
    values = fold_to_32_bits(shingles)
    for i in range(len(texts)):
        reference = MinHash(num_perm=num_perm, seed=seed, hashfunc=int)
        reference.update_batch([int(v) for v in values[offsets[i] : offsets[i + 1]]])
        assert np.array_equal(ours[i], reference.hashvalues), texts[i]
    assert (ours[3] == 0xFFFFFFFF).all()  # an empty text has datasketch's empty signature


def test_exact_dedup_drops_repeated_responses_of_one_problem_only(make_samples) -> None:
    table = make_samples(
        {"sample_id": "a", "response": "So 3 + 4 = 7. \\boxed{7}"},
        {"sample_id": "b", "response": "so 3 + 4 = 7.   \\boxed{7}"},  # same after normalization
        {"sample_id": "c", "response": "So 3 + 4 = 8. \\boxed{8}"},
        {"sample_id": "d", "problem_id": "q", "problem": GARDEN, "response": "So 3 + 4 = 7. \\boxed{7}"},
    )
    result = dedup_exact(table)
    assert result.kept.column("sample_id").to_pylist() == ["a", "c", "d"]
    assert detail(result, "b")["reason"] == "exact_duplicate_sample"
    assert detail(result, "b")["detail"] == {"duplicate_of": "a"}
    assert result.counts == {"exact_duplicate_sample": 1}


def test_exact_dedup_drops_every_sample_of_a_problem_repeated_under_another_id(make_samples) -> None:
    table = make_samples(
        {"sample_id": "a", "problem_id": "p1", "problem": BAKERY},
        {"sample_id": "b", "problem_id": "p2", "problem": BAKERY.upper(), "response": "other"},
        {"sample_id": "c", "problem_id": "p2", "problem": BAKERY.upper(), "response": "another"},
    )
    result = dedup_exact(table)
    assert result.kept.column("sample_id").to_pylist() == ["a"]
    assert {r["reason"] for r in result.rejected.to_pylist()} == {"exact_duplicate_problem"}
    assert detail(result, "c")["detail"] == {"duplicate_of_problem": "p1"}


def test_near_dedup_drops_an_edited_copy_but_keeps_number_variants_and_distinct_problems(make_samples) -> None:
    table = make_samples(
        {"sample_id": "a", "problem_id": "p1", "problem": BAKERY},
        {"sample_id": "b", "problem_id": "p2", "problem": BAKERY_EDITED},
        {"sample_id": "c", "problem_id": "p3", "problem": BAKERY_OTHER_NUMBERS},
        {"sample_id": "d", "problem_id": "p4", "problem": GARDEN},
    )
    result = dedup_near(table)
    assert result.kept.column("sample_id").to_pylist() == ["a", "c", "d"]
    dropped = detail(result, "b")
    assert dropped["reason"] == "near_duplicate_problem"
    assert dropped["detail"]["duplicate_of_problem"] == "p1"
    assert dropped["detail"]["jaccard"] >= DedupConfig().problem_threshold

    without_number_rule = dedup_near(table, require_same_numbers=False)
    assert without_number_rule.kept.column("sample_id").to_pylist() == ["a", "d"]


def test_numbers_with_thousands_separators_are_the_same_numbers(make_samples) -> None:
    table = make_samples(
        {
            "sample_id": "a",
            "problem_id": "p1",
            "problem": "A car costs $20,000 and loses 15% of its value. What is it worth?",
        },
        {
            "sample_id": "b",
            "problem_id": "p2",
            "problem": "A car costs $20000 and loses 15% of its value. What is it worth?",
        },
    )
    assert dedup_near(table).counts == {"near_duplicate_problem": 1}


def test_near_dedup_drops_rephrased_responses_within_a_problem_only(make_samples) -> None:
    solution = (
        "First the bakery sells 24 + 18 = 42 muffins in a day. Each muffin costs 3 dollars, "
        "so the bakery makes 42 * 3 = 126 dollars. The answer is \\boxed{126}."
    )
    table = make_samples(
        {"sample_id": "a", "problem_id": "p1", "problem": BAKERY, "response": solution},
        {"sample_id": "b", "problem_id": "p1", "problem": BAKERY, "response": solution.replace("First the", "The")},
        {
            "sample_id": "c",
            "problem_id": "p1",
            "problem": BAKERY,
            "response": "Morning and afternoon give 42 muffins, times $3 is \\boxed{126}.",
        },
        {"sample_id": "d", "problem_id": "p4", "problem": GARDEN, "response": solution},
    )
    result = dedup_near(table)
    assert result.kept.column("sample_id").to_pylist() == ["a", "c", "d"]
    assert detail(result, "b")["reason"] == "near_duplicate_response"
    assert detail(result, "b")["detail"]["duplicate_of"] == "a"
    assert dedup_near(table, compare_responses=False).counts == {}


def test_near_dedup_is_deterministic_and_keeps_input_order(make_samples) -> None:
    rows = [
        {"sample_id": f"s{i}", "problem_id": f"p{i}", "problem": text}
        for i, text in enumerate([GARDEN, BAKERY, BAKERY_EDITED])
    ]
    table = make_samples(*rows)
    first, second = dedup_near(table), dedup_near(table)
    assert first.kept.equals(second.kept) and first.rejected.equals(second.rejected)
    assert first.kept.column("sample_id").to_pylist() == ["s0", "s1"]


def test_dedup_reads_problem_tables_without_responses() -> None:
    problems = pa.table({"problem_id": ["p1", "p2", "p3"], "problem": [BAKERY, BAKERY_EDITED, GARDEN]})
    result = dedup_near(problems)
    assert result.kept.column("problem_id").to_pylist() == ["p1", "p3"]
    assert result.rejected.column("row_id").to_pylist() == ["p2"]


def test_dedup_validates_its_arguments(make_samples) -> None:
    table = make_samples({})
    with pytest.raises(ValidationError):
        dedup_near(table, problem_threshold=0.0)
    with pytest.raises(KeyError, match="problem"):
        dedup_exact(table.drop_columns(["problem"]))
    with pytest.raises(TypeError, match="pyarrow.Table"):
        dedup_exact(table.to_pylist())
    with pytest.raises(ValidationError):
        DedupConfig(shingles=3)

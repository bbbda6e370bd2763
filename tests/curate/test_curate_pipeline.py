"""The whole curation: steps in order, every row accounted for, counts that add up."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
from pydantic import ValidationError

from mathforge.curate import CurateConfig, CurateResult, StepCounts, curate
from mathforge.records import REJECTED_SCHEMA

LEAKED = (
    "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. How much did she earn?"
)
BAKERY = "A bakery sells 24 muffins every morning and 18 muffins every afternoon. Each muffin costs $3. How much does it make in one day?"
GARDEN = "A garden is 12 meters long and 5 meters wide. What is its area in square meters?"


@pytest.fixture()
def benchmark_file(tmp_path: Path) -> Path:
    path = tmp_path / "bench.jsonl"
    path.write_text(json.dumps({"id": "b1", "question": LEAKED, "answer": "10"}) + "\n")
    return path


@pytest.fixture()
def raw(make_samples) -> pa.Table:
    def sample(sample_id: str, problem_id: str, problem: str, response: str, **fields) -> dict:
        return {"sample_id": sample_id, "problem_id": problem_id, "problem": problem, "response": response, **fields}

    return make_samples(
        sample("truncated", "bakery", BAKERY, "42 muffins a day, times", finish_reason="length"),
        sample("b1", "bakery", BAKERY, "They sell 24 + 18 = 42 muffins, and 42 * 3 = 126 dollars. \\boxed{126}"),
        sample("b2", "bakery", BAKERY, "they sell 24 + 18 = 42 muffins, and 42 * 3 = 126 dollars.  \\boxed{126}"),
        sample(
            "b3",
            "bakery",
            BAKERY,
            "Morning plus afternoon is 42 muffins; at $3 each that is \\boxed{126}.",
            strategy="dart",
        ),
        sample("b4", "bakery", BAKERY, "Per day: 42 muffins. Revenue 42 x 3 = 126. \\boxed{126}", strategy="dart"),
        sample("copy", "bakery-copy", "Please solve: " + BAKERY.lower(), "42 * 3 = 126. \\boxed{126}"),
        sample("leak", "weng", LEAKED, "50 minutes is 5/6 of an hour, 12 * 5/6 = 10. \\boxed{10}"),
        sample("g1", "garden", GARDEN, "The area is 12 * 5 = 60 square meters. \\boxed{60}"),
    )


def test_curate_runs_every_step_in_order_and_accounts_for_every_row(raw: pa.Table, benchmark_file: Path) -> None:
    config = CurateConfig.model_validate(
        {"decontamination": {"benchmarks": [str(benchmark_file)]}, "capping": {"max_per_problem": 2}}
    )
    result = curate(raw, config)
    assert [step.step for step in result.steps] == ["filter", "decontaminate", "dedup_exact", "dedup_near", "cap"]
    reasons = {r["row_id"]: (r["stage"], r["reason"]) for r in result.rejected.to_pylist()}
    capped = [row_id for row_id, (stage, _) in reasons.items() if stage == "cap"]
    # The cap of 2 keeps the only "generate" sample of the bakery and one of its two "dart" samples.
    assert len(capped) == 1 and capped[0] in {"b3", "b4"}
    assert {row_id: why for row_id, why in reasons.items() if row_id not in capped} == {
        "truncated": ("filter", "truncated"),
        "leak": ("decontaminate", "benchmark_exact_match"),
        "b2": ("dedup_exact", "exact_duplicate_sample"),
        "copy": ("dedup_near", "near_duplicate_problem"),
    }
    assert sorted(result.kept.column("sample_id").to_pylist() + list(reasons)) == sorted(
        raw.column("sample_id").to_pylist()
    )
    assert result.steps[0].n_in == raw.num_rows and result.steps[-1].n_out == result.kept.num_rows == 3
    for step in result.steps:
        assert step.n_in - sum(step.dropped.values()) == step.n_out
    assert sum(result.counts.values()) == result.rejected.num_rows == raw.num_rows - result.kept.num_rows
    assert result.rejected.schema.equals(REJECTED_SCHEMA)
    assert result.kept.schema.equals(raw.schema)


def test_steps_that_are_off_or_have_nothing_to_do_are_absent(raw: pa.Table) -> None:
    result = curate(
        raw, CurateConfig.model_validate({"filters": {"enabled": False}, "dedup": {"near_duplicates": False}})
    )
    assert [step.step for step in result.steps] == ["dedup_exact"]
    nothing = curate(raw, CurateConfig.model_validate({"filters": {"enabled": False}, "dedup": {"enabled": False}}))
    assert nothing.steps == () and nothing.kept.equals(raw) and nothing.counts == {}


def test_curate_config_is_strict_and_frozen() -> None:
    with pytest.raises(ValidationError):
        CurateConfig.model_validate({"dedup": {"jaccard": 0.8}})
    config = CurateConfig()
    with pytest.raises(ValidationError):
        config.capping = None  # type: ignore[misc]
    assert config.decontamination.ngram == 13 and config.dedup.problem_threshold == 0.77


def test_results_whose_counts_do_not_add_up_are_refused(raw: pa.Table) -> None:
    empty = REJECTED_SCHEMA.empty_table()
    with pytest.raises(ValueError, match="do not add up"):
        CurateResult(kept=raw, rejected=empty, steps=(StepCounts("x", n_in=9, n_out=8, dropped={}),))
    with pytest.raises(ValueError, match="kept table"):
        CurateResult(kept=raw, rejected=empty, steps=(StepCounts("x", n_in=9, n_out=9, dropped={}),))

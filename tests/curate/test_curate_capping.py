"""Fair per-problem capping: turns across groups, seeded choice, independent of row order."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from pydantic import ValidationError

from mathforge.curate import cap_per_problem


def rows_for(problem_id: str, strategy: str, n: int) -> list[dict]:
    return [
        {"sample_id": f"{problem_id}-{strategy}-{i}", "problem_id": problem_id, "strategy": strategy} for i in range(n)
    ]


def kept_strategies(result, problem_id: str) -> Counter:
    kept = result.kept.to_pylist()
    return Counter(r["strategy"] for r in kept if r["problem_id"] == problem_id)


def test_groups_take_turns_so_no_strategy_dominates(make_samples) -> None:
    table = make_samples(
        *rows_for("p1", "dart", 10), *rows_for("p1", "self_correction", 2), *rows_for("p1", "template", 1)
    )
    result = cap_per_problem(table, max_per_problem=4)
    counts = kept_strategies(result, "p1")
    # Round one gives one sample per strategy; the fourth comes from whichever has a second one and turns first.
    assert counts["template"] == 1 and sorted([counts["dart"], counts["self_correction"]]) == [1, 2]
    assert kept_strategies(cap_per_problem(table, max_per_problem=3), "p1") == {
        "dart": 1,
        "self_correction": 1,
        "template": 1,
    }
    assert kept_strategies(cap_per_problem(table, max_per_problem=6), "p1") == {
        "dart": 3,
        "self_correction": 2,
        "template": 1,
    }
    assert result.counts == {"over_problem_cap": 9}
    assert json.loads(result.rejected.column("detail")[0].as_py()) == {"kept": 4, "of": 13}


def test_problems_under_the_cap_are_untouched(make_samples) -> None:
    table = make_samples(*rows_for("p1", "dart", 5), *rows_for("p2", "dart", 2))
    result = cap_per_problem(table, max_per_problem=3)
    assert kept_strategies(result, "p2") == {"dart": 2}
    assert kept_strategies(result, "p1") == {"dart": 3}


def test_choice_depends_on_the_seed_not_on_row_order(make_samples) -> None:
    rows = rows_for("p1", "dart", 12) + rows_for("p1", "generate", 12) + rows_for("p2", "dart", 9)
    table = make_samples(*rows)
    shuffled = table.take(np.random.default_rng(0).permutation(table.num_rows))

    def kept_ids(t, seed):
        return sorted(cap_per_problem(t, max_per_problem=5, seed=seed).kept.column("sample_id").to_pylist())

    assert kept_ids(table, 0) == kept_ids(shuffled, 0)
    assert len({tuple(kept_ids(table, seed)) for seed in range(5)}) > 1


def test_capping_validates_its_arguments(make_samples) -> None:
    table = make_samples({})
    with pytest.raises(ValidationError):
        cap_per_problem(table, max_per_problem=0)
    with pytest.raises(KeyError, match="team"):
        cap_per_problem(table, max_per_problem=2, group_by=("team",))

"""Budgets, balanced allocation and result building shared by the selectors."""

from __future__ import annotations

import doctest

import numpy as np
import pyarrow as pa
import pytest
from pydantic import ValidationError

import mathforge.select.base as base
import mathforge.select.kmeans as kmeans
from mathforge.records import REJECTED_SCHEMA
from mathforge.select.base import Budget, finish_selection, group_rows, take_balanced


@pytest.mark.parametrize("module", [base, kmeans], ids=["base", "kmeans"])
def test_doctests_pass(module):
    assert doctest.testmod(module).failed == 0


@pytest.mark.parametrize("kwargs", [{}, {"rows": 1, "tokens": 1}, {"rows": 0}, {"tokens": -5}, {"rows": 1, "bogus": 2}])
def test_budget_rejects_invalid(kwargs):
    with pytest.raises(ValidationError):
        Budget(**kwargs)


def test_token_costs_use_counts_then_character_proxy(make_samples):
    table = make_samples(
        [
            {"sample_id": "a", "problem_id": "p", "problem": "x", "response": "r" * 40, "n_completion_tokens": 7},
            {"sample_id": "b", "problem_id": "p", "problem": "x", "response": "r" * 41, "n_completion_tokens": 0},
            {"sample_id": "c", "problem_id": "p", "problem": "x", "response": "", "n_completion_tokens": 0},
        ]
    )
    assert Budget(tokens=100).costs(table).tolist() == [7, 11, 1]
    assert Budget(rows=2).costs(table).tolist() == [1, 1, 1]


def test_take_balanced_is_water_filling_with_row_costs():
    sizes = [1, 3, 10, 50]
    groups, start = [], 0
    for size in sizes:
        groups.append(np.arange(start, start + size))
        start += size
    taken = take_balanced(groups, np.ones(start, dtype=np.int64), 30)
    per_group = [int(np.isin(group, taken).sum()) for group in groups]
    # 30 over 4 groups: the group of 1 gives up 1, the group of 3 gives 3, the rest split 26 as 13/13.
    assert per_group == [1, 3, 10, 16]
    assert all(np.array_equal(np.intersect1d(g, taken), g[: n]) for g, n in zip(groups, per_group))


def test_take_balanced_token_share_stops_at_first_row_that_does_not_fit():
    costs = np.array([5, 5, 100, 1, 6, 6, 6, 6], dtype=np.int64)
    groups = [np.array([0, 1, 2, 3]), np.array([4, 5, 6, 7])]
    # Group 2 (24 tokens) goes first with share 40 // 2 = 20: rows 4, 5, 6 (18).
    # Group 1 then gets the remaining 22: rows 0, 1 (10); row 2 (100) ends its turn, row 3 is not reached.
    assert take_balanced(groups, costs, 40).tolist() == [0, 1, 4, 5, 6]


def test_take_balanced_proportional_keeps_the_same_fraction():
    groups = [np.arange(0, 100), np.arange(100, 400)]
    taken = take_balanced(groups, np.ones(400, dtype=np.int64), 40, proportional=True)
    assert [int(np.isin(g, taken).sum()) for g in groups] == [10, 30]


def test_group_rows_orders_by_key_then_index():
    labels = np.array([1, 0, 1, 0, 1])
    key = np.array([0.5, 0.2, 0.1, 0.2, 0.5])
    assert [g.tolist() for g in group_rows(labels, key)] == [[1, 3], [2, 0, 4]]


def test_finish_selection_writes_columns_and_rejects(make_samples):
    table = make_samples(
        [
            {"sample_id": f"s{i}", "problem_id": f"p{i}", "problem": "x", "response": "y", "selected_by": by}
            for i, by in enumerate(["grape", None, ""])
        ]
    )
    result = finish_selection(
        table,
        np.array([0, 2]),
        method="kmeans",
        drop_reasons="not_selected",
        columns={"cluster_id": np.array([4, 5, 6]), "selection_score": np.array([0.1, 0.2, 0.3])},
    )
    assert result.table.column("sample_id").to_pylist() == ["s0", "s2"]
    assert result.table.column("selected_by").to_pylist() == ["grape+kmeans", "kmeans"]
    assert result.table.column("cluster_id").to_pylist() == [4, 6]
    assert result.table.schema == table.schema
    assert result.counts == {"kept": 2, "not_selected": 1}
    assert result.rejected.schema == REJECTED_SCHEMA
    assert result.rejected.select(["stage", "row_id", "problem_id", "reason", "detail"]).to_pylist() == [
        {"stage": "select.kmeans", "row_id": "s1", "problem_id": "p1", "reason": "not_selected", "detail": None}
    ]


def test_finish_selection_appends_missing_selection_columns():
    table = pa.table({"sample_id": ["a", "b"]})
    result = finish_selection(table, np.array([1]), method="s2l", drop_reasons="not_selected", columns={"cluster_id": np.array([3, 4])})
    assert result.table.to_pylist() == [{"sample_id": "b", "cluster_id": 4, "selected_by": "s2l"}]

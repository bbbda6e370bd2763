"""The contract every selector shares: budgets, results, balanced allocation, column writing.

A selector reads a SAMPLE_SCHEMA table and returns the rows it keeps, in input
order, with `cluster_id` / `selection_score` / `selected_by` (and, for GRAPE,
`loglik_per_token`) filled in, plus drop counts and a REJECTED_SCHEMA table
naming every row it left out and why. Inputs are never modified.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, model_validator

from mathforge.section import Section
from mathforge.records import REJECTED_SCHEMA, SAMPLE_SCHEMA, conform

#: Pass-rate bucket edges of difficulty tables (as the dataset card's difficulty section).
PASS_RATE_EDGES = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0)

#: Characters per token assumed when a row has no token count (English BPE rule of thumb).
CHARS_PER_TOKEN = 4


class Budget(Section):
    """How much a selection step keeps: a number of rows or a number of tokens (exactly one).

    A row's token cost is its `n_completion_tokens` (the response tokens, which
    SFT trains on). Rows whose count is zero or missing (tables built outside
    the generation stages) cost `ceil(len(response) / 4)` instead, the usual
    characters-per-token rule of thumb for English BPE tokenizers.
    """

    rows: int | None = Field(default=None, gt=0, description="Keep at most this many rows.")
    tokens: int | None = Field(
        default=None, gt=0, description="Keep rows whose token costs add up to at most this many tokens."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> "Budget":
        if (self.rows is None) == (self.tokens is None):
            raise ValueError("set exactly one of rows or tokens")
        return self

    @property
    def amount(self) -> int:
        """The budget in its own unit (rows or tokens)."""
        return self.rows if self.rows is not None else self.tokens  # type: ignore[return-value]

    def costs(self, table: pa.Table) -> np.ndarray:
        """Return each row's cost in the budget's unit (int64): 1 per row, or its token count.

        Reads `n_completion_tokens`, and `response` for rows without a positive count.
        """
        if self.rows is not None:
            return np.ones(table.num_rows, dtype=np.int64)
        if "n_completion_tokens" in table.column_names:
            counts = table.column("n_completion_tokens").fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
        else:
            counts = np.zeros(table.num_rows, dtype=np.int64)
        missing = counts <= 0
        if missing.any():
            require_columns(table, ["response"], why="token budget for rows without n_completion_tokens")
            lengths = pc.utf8_length(table.column("response").fill_null("")).to_numpy(zero_copy_only=False)
            counts = np.where(missing, np.maximum(1, -(-lengths.astype(np.int64) // CHARS_PER_TOKEN)), counts)
        return counts


@dataclass(frozen=True)
class SelectResult:
    """What a selection step returns.

    Attributes:
        table: kept rows in input order, selection columns filled.
        counts: "kept" plus one entry per drop reason (e.g. "not_selected").
        rejected: one REJECTED_SCHEMA row per dropped row (stage, row_id = sample_id, reason).
        stats: small numeric facts for the manifest (clusters used, tokens kept, ...).
        difficulty: problems and rows per pass-rate bucket before and after (see `difficulty_shift`).
    """

    table: pa.Table
    counts: dict[str, int]
    rejected: pa.Table
    stats: dict[str, float] = field(default_factory=dict)
    difficulty: list[dict[str, Any]] = field(default_factory=list)


def require_columns(table: pa.Table, names: Iterable[str], *, why: str) -> None:
    """Raise KeyError naming the columns of `names` that `table` lacks."""
    missing = [name for name in names if name not in table.column_names]
    if missing:
        raise KeyError(f"{why} needs columns {missing}; table has {table.column_names}")


def pooled_pass_rates(query_info: pa.Table) -> dict[str, float]:
    """Per problem, verified-correct trials over all trials, summed over its rows (one per sampling model).

    Reads QUERY_INFO_SCHEMA rows (`problem_id`, `n_trials`, `n_correct`).
    """
    totals: dict[str, list[int]] = {}
    for row in query_info.select(["problem_id", "n_trials", "n_correct"]).to_pylist():
        total = totals.setdefault(row["problem_id"], [0, 0])
        total[0] += row["n_correct"]
        total[1] += row["n_trials"]
    return {problem_id: correct / trials if trials else 0.0 for problem_id, (correct, trials) in totals.items()}


def _bucket(rate: float | None) -> str:
    if rate is None:
        return "unknown"
    for low, high in zip(PASS_RATE_EDGES, PASS_RATE_EDGES[1:]):
        if low <= rate < high or (high == PASS_RATE_EDGES[-1] and rate == high):
            return f"{low:g}–{high:g}"
    raise ValueError(f"pass rate {rate} is outside [0, 1]")


def difficulty_shift(before: pa.Table, after: pa.Table, pass_rates: Mapping[str, float]) -> list[dict[str, Any]]:
    """Problems and rows per pass-rate bucket before and after a selection: a flattened allocation shows.

    Reads `problem_id` of both tables. One dict per bucket (in `PASS_RATE_EDGES`
    order, then 'unknown' for problems without a pass rate, when there are
    any): `pass_rate`, `problems_before`, `rows_before`, `problems_after`, `rows_after`.
    """
    labels = [_bucket(low) for low in PASS_RATE_EDGES[:-1]]
    counts = {label: {"problems_before": set(), "rows_before": 0, "problems_after": set(), "rows_after": 0} for label in labels}
    for when, table in (("before", before), ("after", after)):
        for problem_id in table.column("problem_id").to_pylist():
            entry = counts.setdefault(
                _bucket(pass_rates.get(problem_id)),
                {"problems_before": set(), "rows_before": 0, "problems_after": set(), "rows_after": 0},
            )
            entry[f"problems_{when}"].add(problem_id)
            entry[f"rows_{when}"] += 1
    return [
        {
            "pass_rate": label,
            "problems_before": len(entry["problems_before"]),
            "rows_before": entry["rows_before"],
            "problems_after": len(entry["problems_after"]),
            "rows_after": entry["rows_after"],
        }
        for label, entry in counts.items()
    ]


def take_balanced(groups: Sequence[np.ndarray], costs: np.ndarray, budget: int, *, proportional: bool = False) -> np.ndarray:
    """Return the row indices taken from `groups`, smallest group first, each an equal share of what remains.

    S2L's balanced sampling rule (Yang et al., 2024), generalized to token
    costs: groups are visited by ascending total cost; a group's share is
    `remaining // groups_left`; it gives up rows in its own order while their
    cumulative cost fits the share, and what it does not spend stays for the
    larger groups after it. With row costs this is water-filling: a group gets
    `min(size, share)` and the shares of groups that are not exhausted differ
    by at most one. With `proportional`, a group's share is
    `remaining * group_cost // cost_left` instead (same fraction of every group).

    A row that does not fit ends its group's turn: skipping ahead to shorter
    rows would bias token-budget selections toward short responses.

    Args:
        groups: per group, row indices in the order the group gives them up.
        costs: cost of every row (indexed by row index), in the budget's unit.
        budget: total amount to spend.
        proportional: split in proportion to each group's total cost.

    >>> take_balanced([np.array([0]), np.array([1, 2, 3, 4])], np.ones(5, dtype=np.int64), 3).tolist()
    [0, 1, 2]
    """
    totals = np.array([int(costs[group].sum()) for group in groups], dtype=np.int64)
    visit = sorted(range(len(groups)), key=lambda i: (int(totals[i]), i))
    remaining = int(budget)
    cost_left = int(totals.sum())
    taken = []
    for position, index in enumerate(visit):
        group_cost = int(totals[index])
        if proportional:
            share = remaining * group_cost // cost_left if cost_left else 0
        else:
            share = remaining // (len(visit) - position)
        cost_left -= group_cost
        cumulative = np.cumsum(costs[groups[index]])
        n_take = int(np.searchsorted(cumulative, share, side="right"))
        if n_take:
            taken.append(groups[index][:n_take])
            remaining -= int(cumulative[n_take - 1])
    return np.sort(np.concatenate(taken)) if taken else np.zeros(0, dtype=np.int64)


def group_rows(labels: np.ndarray, order_key: np.ndarray) -> list[np.ndarray]:
    """Split row indices by label, each group sorted by ascending `order_key` (ties by row index)."""
    order = np.lexsort((np.arange(len(labels)), order_key, labels))
    sorted_labels = labels[order]
    boundaries = np.flatnonzero(np.diff(sorted_labels)) + 1
    return np.split(order, boundaries) if len(order) else []


def _set_column(table: pa.Table, name: str, values: pa.Array | pa.ChunkedArray) -> pa.Table:
    values = values.cast(SAMPLE_SCHEMA.field(name).type)
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), name, values)
    return table.append_column(SAMPLE_SCHEMA.field(name), values)


def finish_selection(
    table: pa.Table,
    keep: np.ndarray,
    *,
    method: str,
    drop_reasons: np.ndarray | str,
    columns: Mapping[str, np.ndarray] | None = None,
    stats: Mapping[str, float] | None = None,
) -> SelectResult:
    """Build a SelectResult: kept rows with selection columns written, counts and rejects.

    Reads `sample_id` (and `problem_id` when present); writes each of `columns`
    (full-length arrays indexed like `table`) on the kept rows and appends
    `method` to `selected_by` ('grape' then 'kmeans' gives 'grape+kmeans').

    Args:
        table: the step's input table.
        keep: sorted indices of the kept rows.
        method: the selector's name.
        drop_reasons: one reason for every dropped row, or per-row reasons (full length).
        columns: SAMPLE_SCHEMA column name -> values for every input row.
        stats: extra numeric facts for the result.
    """
    keep = np.asarray(keep, dtype=np.int64)
    kept = table.take(pa.array(keep, type=pa.int64()))
    for name, values in (columns or {}).items():
        kept = _set_column(kept, name, pa.array(np.asarray(values)[keep]))
    previous = kept.column("selected_by") if "selected_by" in kept.column_names else pa.nulls(kept.num_rows, pa.string())
    previous = previous.cast(pa.string())
    appended = pc.binary_join_element_wise(previous, pa.scalar(method), "+")
    has_previous = pc.fill_null(pc.not_equal(previous, ""), False)
    kept = _set_column(kept, "selected_by", pc.if_else(has_previous, appended, pa.scalar(method)))

    dropped_mask = np.ones(table.num_rows, dtype=bool)
    dropped_mask[keep] = False
    dropped = np.flatnonzero(dropped_mask)
    if isinstance(drop_reasons, str):
        reasons = np.full(len(dropped), drop_reasons, dtype=object)
    else:
        reasons = np.asarray(drop_reasons, dtype=object)[dropped]
    take = pa.array(dropped, type=pa.int64())
    problem_ids = (
        table.column("problem_id").take(take) if "problem_id" in table.column_names else pa.nulls(len(dropped), pa.string())
    )
    rejected = conform(
        pa.table(
            {
                "stage": pa.array([f"select.{method}"] * len(dropped), pa.string()),
                "row_id": table.column("sample_id").take(take),
                "problem_id": problem_ids,
                "reason": pa.array(reasons.tolist(), pa.string()),
            }
        ),
        REJECTED_SCHEMA,
    )
    counts = {"kept": int(len(keep))}
    unique_reasons, reason_counts = np.unique(reasons.astype(str), return_counts=True)
    counts.update({str(reason): int(count) for reason, count in zip(unique_reasons, reason_counts)})
    return SelectResult(table=kept, counts=counts, rejected=rejected, stats=dict(stats or {}))

"""What every curation step returns (kept rows, rejected rows with reasons, counts that add up), and table helpers.

Shape of the counts (what the dataset card reads):

- `CurateResult.steps` is one `StepCounts(step, n_in, n_out, dropped)` per
  step that ran, in order; `dropped` maps a snake_case reason to a row count
  and `n_in - sum(dropped.values()) == n_out`, and each step's `n_out` is the
  next step's `n_in`. That is the raw -> exported table, one line per step.
- `CurateResult.counts` flattens it: reason -> rows dropped, over all steps.
  Reasons are distinct across steps, so no information is lost.
- `CurateResult.rejected` has one `REJECTED_SCHEMA` row per dropped row,
  whose `stage` is the step and `detail` a JSON object (what it duplicated,
  which benchmark item it matched, which bound it broke).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mathforge.records import REJECTED_SCHEMA, conform


@dataclass(frozen=True)
class StepCounts:
    """Rows into and out of one curation step, with the dropped rows counted by reason."""

    step: str
    n_in: int
    n_out: int
    dropped: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class CurateResult:
    """Kept table, rejected rows (`REJECTED_SCHEMA`) and per-step counts of one or more steps."""

    kept: pa.Table
    rejected: pa.Table
    steps: tuple[StepCounts, ...]

    def __post_init__(self) -> None:
        for step in self.steps:
            if step.n_in - sum(step.dropped.values()) != step.n_out:
                raise ValueError(f"counts of step {step.step!r} do not add up: {step}")
        for before, after in zip(self.steps, self.steps[1:]):
            if before.n_out != after.n_in:
                raise ValueError(
                    f"step {after.step!r} starts with {after.n_in} rows, {before.step!r} left {before.n_out}"
                )
        if self.steps and self.kept.num_rows != self.steps[-1].n_out:
            raise ValueError(f"kept table has {self.kept.num_rows} rows, counts say {self.steps[-1].n_out}")
        if self.rejected.num_rows != sum(sum(step.dropped.values()) for step in self.steps):
            raise ValueError("rejected table and counts disagree")

    @property
    def counts(self) -> dict[str, int]:
        """Rows dropped by reason, over all steps."""
        total: Counter[str] = Counter()
        for step in self.steps:
            total.update(step.dropped)
        return dict(total)


def codes(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Return an int64 code per value, numbered in order of first appearance (equal values, equal codes)."""
    if isinstance(values, pa.ChunkedArray):
        # Encoding chunk by chunk would give each chunk its own dictionary.
        values = values.combine_chunks()
    return pc.dictionary_encode(values).indices.to_numpy(zero_copy_only=False).astype(np.int64)


def detail_json(**fields: object) -> str:
    """Encode a rejected row's detail as compact JSON with sorted keys."""
    return json.dumps(fields, sort_keys=True, ensure_ascii=False)


def row_ids(table: pa.Table) -> pa.ChunkedArray:
    """Return the id of each row: `sample_id` for samples, `problem_id` for problems."""
    return table.column("sample_id" if "sample_id" in table.column_names else "problem_id")


def require_columns(table: pa.Table, columns: Sequence[str], step: str) -> None:
    """Raise TypeError unless `table` is a pyarrow Table, KeyError naming any missing column."""
    if not isinstance(table, pa.Table):
        raise TypeError(f"{step}: expected a pyarrow.Table, got {type(table).__name__}")
    missing = [name for name in columns if name not in table.column_names]
    if missing:
        raise KeyError(f"{step}: table lacks column(s) {missing}")


def split_rows(
    step: str,
    table: pa.Table,
    reasons: Sequence[str | None],
    details: Sequence[str | None],
    **columns: Sequence[object],
) -> CurateResult:
    """Keep the rows whose reason is None, reject the others with their reason and detail.

    `columns` gives per-row values of further optional `REJECTED_SCHEMA`
    columns (e.g. decontamination's `benchmark`, `layer`, `score`). Kept and
    rejected rows stay in input order; the input table is not changed.
    """
    if len(reasons) != table.num_rows or len(details) != table.num_rows:
        raise ValueError(f"{step}: need one reason and one detail per row")
    is_dropped = np.array([reason is not None for reason in reasons], dtype=bool)
    dropped_rows = np.flatnonzero(is_dropped)
    rejected = conform(
        pa.table(
            {
                "stage": pa.array([step] * len(dropped_rows), pa.string()),
                "row_id": row_ids(table).take(dropped_rows).cast(pa.string()),
                "problem_id": table.column("problem_id").take(dropped_rows).cast(pa.string()),
                "reason": pa.array([reasons[i] for i in dropped_rows], pa.string()),
                "detail": pa.array([details[i] for i in dropped_rows], pa.string()),
                **{
                    name: pa.array([values[i] for i in dropped_rows], REJECTED_SCHEMA.field(name).type)
                    for name, values in columns.items()
                },
            }
        ),
        REJECTED_SCHEMA,
    )
    counts = Counter(reasons[i] for i in dropped_rows)
    kept = table.filter(pa.array(~is_dropped))
    return CurateResult(
        kept=kept,
        rejected=rejected,
        steps=(StepCounts(step=step, n_in=table.num_rows, n_out=kept.num_rows, dropped=dict(sorted(counts.items()))),),
    )

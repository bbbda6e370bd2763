"""Cap the samples per problem fairly: round-robin across (source, strategy) groups.

Why: one strategy (say DART's many correct responses to an easy problem)
would otherwise fill a problem's quota and crowd out the others. Within a
problem, the groups take turns, each giving its next sample, until
`max_per_problem` samples are kept. The order inside a group and the order
in which groups take turns are seeded hashes of the sample and group ids, so
the choice depends on the seed only, not on the order of the input rows.

Note that `source` is the problem's source in `SAMPLE_SCHEMA` and so is
constant within a problem: with the default `group_by` the turns are in
effect taken by strategies. Add "model" to share a quota between models.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash
from pydantic import Field

from mathforge.section import Section
from mathforge.curate.result import CurateResult, codes, detail_json, require_columns, row_ids, split_rows


class CappingConfig(Section):
    """Fair per-problem capping."""

    max_per_problem: int | None = Field(default=None, ge=1, description="Samples kept per problem; None: no cap.")
    group_by: tuple[str, ...] = Field(
        default=("source", "strategy"), min_length=1, description="Columns whose values take turns within a problem."
    )
    seed: int = Field(default=0, ge=0, description="Seed of the order within and between groups.")


def cap_per_problem(
    table: pa.Table, *, max_per_problem: int, group_by: Sequence[str] = ("source", "strategy"), seed: int = 0
) -> CurateResult:
    """Keep at most `max_per_problem` samples per problem, taken in turns across `group_by` groups.

    Reads `problem_id`, `sample_id` and the `group_by` columns; adds no
    column. Reason: ``over_problem_cap`` (detail: how many of the problem's
    samples were kept).
    """
    require_columns(table, ["problem_id", "sample_id", *group_by], "cap_per_problem")
    CappingConfig(max_per_problem=max_per_problem, group_by=tuple(group_by), seed=seed)
    group_keys = _group_keys(table, group_by)
    turn_keys = pc.binary_join_element_wise(table.column("problem_id").cast(pa.string()), group_keys, "\x1f")
    sample_order = _seeded_hashes(seed, row_ids(table).cast(pa.string()))
    turn_order = _seeded_hashes(seed, turn_keys)
    problem_codes = codes(table.column("problem_id"))
    group_codes = codes(group_keys)
    rows = np.arange(table.num_rows)

    # Rank of each sample within its (problem, group): 0 for the group's first turn, 1 for its second...
    by_group = np.lexsort((rows, sample_order, group_codes, problem_codes))
    block_starts = np.flatnonzero(
        np.diff(problem_codes[by_group], prepend=-1) | np.diff(group_codes[by_group], prepend=-1)
    )
    rank = np.empty(table.num_rows, dtype=np.int64)
    rank[by_group] = np.arange(table.num_rows) - np.repeat(
        block_starts, np.diff(np.append(block_starts, table.num_rows))
    )

    # Round r of every group comes before round r + 1; within a round, groups go in their seeded turn order.
    by_turn = np.lexsort((rows, turn_order, rank, problem_codes))
    problem_starts = np.flatnonzero(np.diff(problem_codes[by_turn], prepend=-1))
    problem_sizes = np.diff(np.append(problem_starts, table.num_rows))
    position = np.empty(table.num_rows, dtype=np.int64)
    position[by_turn] = np.arange(table.num_rows) - np.repeat(problem_starts, problem_sizes)
    size_of_problem = np.empty(table.num_rows, dtype=np.int64)
    size_of_problem[by_turn] = np.repeat(problem_sizes, problem_sizes)

    reasons: list[str | None] = [None] * table.num_rows
    details: list[str | None] = [None] * table.num_rows
    for row in np.flatnonzero(position >= max_per_problem):
        reasons[row] = "over_problem_cap"
        details[row] = detail_json(kept=max_per_problem, of=int(size_of_problem[row]))
    return split_rows("cap", table, reasons, details)


def _group_keys(table: pa.Table, group_by: Sequence[str]) -> pa.ChunkedArray:
    """Join each row's `group_by` values into one key (nulls as empty strings)."""
    columns = [pc.fill_null(table.column(name).cast(pa.string()), "") for name in group_by]
    return pc.binary_join_element_wise(*columns, "\x1f")


def _seeded_hashes(seed: int, keys: pa.ChunkedArray) -> np.ndarray:
    """Return a seeded 64-bit hash of each key: a pseudo-random order that ignores row order."""
    return np.fromiter(
        (xxhash.xxh3_64_intdigest(key.encode("utf-8"), seed=seed) for key in keys.to_pylist()),
        dtype=np.uint64,
        count=len(keys),
    )

"""Run the configured curation steps in order and account for every row.

Order, and why:

1. ``filter``: broken samples go first, so that dedup never keeps a broken
   row as the representative of a group of duplicates.
2. ``decontaminate``: a leaked problem is reported as leakage, with its
   benchmark item, rather than as a duplicate of another leaked copy.
3. ``dedup_exact`` then ``dedup_near``.
4. ``cap``: last, so that the quota is spent on rows that survive.

The result's `steps` is the raw -> curated table of the dataset card (see
`mathforge.curate.result` for the shape of the counts).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pyarrow as pa
from pydantic import Field

from mathforge.section import Section
from mathforge.curate.capping import CappingConfig, cap_per_problem
from mathforge.benchmark_sets import BenchmarkSet
from mathforge.curate.decontaminate import DecontaminationConfig, Decontaminator, decontaminate, load_benchmarks
from mathforge.curate.dedup import DedupConfig, dedup_exact, dedup_near
from mathforge.curate.filters import FilterConfig, filter_samples
from mathforge.curate.result import CurateResult, StepCounts
from mathforge.generation.base import Generator
from mathforge.records import REJECTED_SCHEMA


class CurateConfig(Section):
    """Curation of generated samples (section `curation` of a job config)."""

    filters: FilterConfig = Field(default_factory=FilterConfig, description="Sample filters.")
    decontamination: DecontaminationConfig = Field(
        default_factory=DecontaminationConfig,
        description="Benchmark decontamination (runs when benchmarks are listed).",
    )
    dedup: DedupConfig = Field(default_factory=DedupConfig, description="Exact and near-duplicate removal.")
    capping: CappingConfig = Field(default_factory=CappingConfig, description="Fair per-problem cap.")


def curate(
    table: pa.Table,
    config: CurateConfig,
    *,
    benchmarks: Sequence[BenchmarkSet] | Decontaminator | None = None,
    generator: Generator | None = None,
) -> CurateResult:
    """Run filters, decontamination, exact and near dedup and capping as configured.

    Reads and adds the columns of each step (none added). `benchmarks`
    overrides `config.decontamination.benchmarks` (already loaded, or a built
    `Decontaminator`, e.g. to build the indexes once for many shards).
    `generator` serves the decontamination's optional LLM check. Decontamination
    runs when `config.decontamination.check` has 'samples'. A step that is off
    or has nothing to do (no benchmarks, no cap) is absent from the result's `steps`.
    """
    decontamination = config.decontamination
    if benchmarks is None and "samples" in decontamination.check:
        benchmarks = load_benchmarks(decontamination)
    steps: list[Callable[[pa.Table], CurateResult]] = []
    if config.filters.enabled:
        steps.append(lambda current: filter_samples(current, **config.filters.model_dump(exclude={"enabled"})))
    if benchmarks and "samples" in decontamination.check:
        checker = (
            benchmarks
            if isinstance(benchmarks, Decontaminator)
            else Decontaminator(benchmarks, decontamination, generator=generator)
        )
        steps.append(lambda current: decontaminate(current, checker))
    if config.dedup.enabled:
        steps.append(dedup_exact)
        if config.dedup.near_duplicates:
            steps.append(
                lambda current: dedup_near(current, **config.dedup.model_dump(exclude={"enabled", "near_duplicates"}))
            )
    if config.capping.max_per_problem is not None:
        steps.append(lambda current: cap_per_problem(current, **config.capping.model_dump()))
    # Only the rejected rows and counts of a finished step are kept: its kept table is the next step's
    # input, and holding every step's copy would multiply the memory by the number of steps.
    rejected: list[pa.Table] = []
    counts: list[StepCounts] = []
    current = table
    for step in steps:
        result = step(current)
        current = result.kept
        rejected.append(result.rejected)
        counts.extend(result.steps)
    return CurateResult(
        kept=current,
        rejected=pa.concat_tables(rejected) if rejected else REJECTED_SCHEMA.empty_table(),
        steps=tuple(counts),
    )

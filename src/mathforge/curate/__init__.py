"""Curation of generated samples: filters, decontamination, dedup, fair capping; every drop has a reason.

Each step is a pure function `step(table, *, ...) -> CurateResult` over a
`SAMPLE_SCHEMA` table; `curate` runs the configured steps in order. See
`result` for the shape of the counts the dataset card reads.
"""

from mathforge.curate.capping import CappingConfig, cap_per_problem
from mathforge.curate.decontaminate import (
    DecontaminationConfig,
    Decontaminator,
    Hit,
    contamination_report,
    contamination_summary,
    count_by_benchmark,
    decontaminate,
    load_benchmarks,
)
from mathforge.curate.dedup import DedupConfig, dedup_exact, dedup_near, minhash_signatures
from mathforge.curate.filters import (
    ALL_CHECKS,
    FilterConfig,
    boxed_contents,
    check_arithmetic,
    check_boxed_answers,
    check_evaluated_answer,
    check_code_errors,
    check_final_answer,
    check_language,
    check_length,
    check_truncated,
    filter_samples,
    length_bounds,
)
from mathforge.curate.pipeline import CurateConfig, curate
from mathforge.curate.result import CurateResult, StepCounts

__all__ = [
    "ALL_CHECKS",
    "CappingConfig",
    "CurateConfig",
    "CurateResult",
    "DecontaminationConfig",
    "Decontaminator",
    "DedupConfig",
    "FilterConfig",
    "Hit",
    "StepCounts",
    "boxed_contents",
    "cap_per_problem",
    "check_arithmetic",
    "check_boxed_answers",
    "check_evaluated_answer",
    "check_code_errors",
    "check_final_answer",
    "check_language",
    "check_length",
    "check_truncated",
    "contamination_report",
    "contamination_summary",
    "count_by_benchmark",
    "curate",
    "decontaminate",
    "dedup_exact",
    "dedup_near",
    "filter_samples",
    "length_bounds",
    "load_benchmarks",
    "minhash_signatures",
]

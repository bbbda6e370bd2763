"""A planted reference-audit scenario, shared by tests/synthesis/test_reference_audit.py and
benchmarks/reference_audit.py: scripted problems of which every tenth carries a wrong reference,
sampled by DART with the real verifier."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from mathforge.generation.scripted import planted_references
from mathforge.records import SAMPLE_SCHEMA, Problem, to_table
from mathforge.synthesis.dart import DartConfig, run_dart
from mathforge.verify import verify_answer


def planted_scenario(n_problems: int, seed: int) -> tuple[list[Problem], pa.Table, set[str], dict[str, str]]:
    """DART over `scripted.planted_references` (every tenth reference wrong), for tests and benchmarks.

    Samples with uniform k_u = 4, n_max = 32 and the real verifier; returns the
    problems (with their possibly wrong references), every trial as a
    SAMPLE_SCHEMA table, the planted problem ids and the true answers.
    """
    rows, generator, planted = planted_references(n_problems, seed=seed)
    problems = [Problem(problem_id=pid, problem=text, answer=reference, source="t") for pid, text, reference in rows]
    rounds: list[list[Any]] = []
    run_dart(
        problems,
        generator,
        lambda pairs: [verify_answer(r, s) for r, s in pairs],
        DartConfig(k_uniform=4, n_max=32),
        prompt_fn=lambda p: p.problem,
        on_round=lambda index, samples: rounds.append(samples),
    )
    truth = {p.problem_id: p.answer for p in generator.problems}
    return problems, to_table([s for r in rounds for s in r], SAMPLE_SCHEMA), planted, truth

"""GRAPE: "The Best Instruction-Tuning Data are Those That Fit" (Zhang et al., 2024).

Among several responses to the same instruction, GRAPE keeps the one the
target model already finds most likely: the highest length-normalized
log-likelihood (mean log-probability per response token) under the model
that will be fine-tuned, so SFT moves it least from its own distribution.
Here the candidates are a problem's verified-correct responses (the paper
gathers responses from several strong models and checks them first); the
score comes from `Generator.loglikelihood` on the same chat prompt that
generation used (`prompt_fn`), so with the vLLM backend it is the target
model's own. `per_problem` > 1 keeps the top few instead of one (an
extension).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pyarrow as pa

from mathforge.generation.base import Generator, Prompt
from mathforge.select.base import SelectResult, finish_selection, require_columns


def select_grape(
    table: pa.Table, *, generator: Generator, prompt_fn: Callable[[str], Prompt], per_problem: int = 1
) -> SelectResult:
    """Keep, per problem, the correct response with the highest log-likelihood per token.

    Reads `sample_id`, `problem_id`, `problem`, `response`, `verdict`; writes
    `loglik_per_token` and `selection_score` (both the per-token
    log-likelihood, nats) on kept rows and appends 'grape' to `selected_by`.
    `cluster_id` is left as it was. Dropped rows get 'not_correct' (verdict
    not 'correct': only verified responses are candidates) or
    'grape_not_best' (a better-fitting correct response was kept). Ties go to
    the smaller sample_id, so the choice is deterministic.

    Args:
        table: samples (not modified).
        generator: scores (prompt, response) pairs with the target model.
        prompt_fn: problem text -> the prompt used for generation.
        per_problem: responses kept per problem (>= 1).
    """
    require_columns(table, ["sample_id", "problem_id", "problem", "response", "verdict"], why="select_grape")
    if per_problem < 1:
        raise ValueError(f"per_problem must be >= 1, got {per_problem}")
    if not callable(getattr(generator, "loglikelihood", None)):
        raise TypeError("generator must implement loglikelihood(pairs)")

    verdicts = table.column("verdict").to_pylist()
    candidates = [i for i, verdict in enumerate(verdicts) if verdict == "correct"]
    problems = table.column("problem").to_pylist()
    responses = table.column("response").to_pylist()
    scored = generator.loglikelihood([(prompt_fn(problems[i]), responses[i]) for i in candidates])
    if len(scored) != len(candidates):
        raise ValueError(f"generator returned {len(scored)} log-likelihoods for {len(candidates)} pairs")

    sample_ids = table.column("sample_id").to_pylist()
    scores = np.full(table.num_rows, np.nan)
    for index, result in zip(candidates, scored):
        if np.isnan(result.per_token):
            raise ValueError(f"generator returned a NaN log-likelihood for sample {sample_ids[index]}")
        scores[index] = result.per_token

    by_problem: dict[str, list[int]] = {}
    problem_ids = table.column("problem_id").to_pylist()
    for index in candidates:
        by_problem.setdefault(problem_ids[index], []).append(index)
    keep = sorted(
        index
        for rows in by_problem.values()
        for index in sorted(rows, key=lambda i: (-scores[i], sample_ids[i]))[:per_problem]
    )
    reasons = np.where(np.isnan(scores), "not_correct", "grape_not_best")
    return finish_selection(
        table,
        np.array(keep, dtype=np.int64),
        method="grape",
        drop_reasons=reasons,
        columns={"loglik_per_token": scores, "selection_score": scores},
        stats={"n_problems": float(len(by_problem)), "n_scored": float(len(candidates))},
    )

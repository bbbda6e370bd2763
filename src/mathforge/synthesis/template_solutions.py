"""Template instances as SFT rows: the rendered solution is the response (TemplateGSM, Zhang et al., 2024).

TemplateGSM's rows need no LLM: each instance carries a solution rendered from
its template's solution text, with every number, the answer included, computed
by the template's program in the sandbox (`templates.instantiate`). Here such an
instance becomes a Sample (strategy 'template-solution'), kept only when its
solution ends with the answer in a \\boxed{} that the verifier extracts and
judges equal to the reference, so these rows meet the same bar as sampled
ones. Instances without a solution (LLM-decoupled templates, paraphrases) make
no row.

What is simplified: TemplateGSM also emits each instance's code solution; only
the natural-language solution is a row here. Without a tokenizer,
`n_completion_tokens` counts whitespace-separated words.

Drop reasons: 'no_solution', 'answer_not_boxed_at_end', then the verdict's
own reason for solutions whose final answer is not verified correct
('no_answer_found', 'mismatch', ...).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Callable, Sequence

from mathforge import prompts
from mathforge.conversation import TEMPLATE_SOLUTION_STRATEGY
from mathforge.generation.base import prompt_hash
from mathforge.records import Problem, Rejected, Sample, Verdict, judged_sample, stable_id

STAGE = "template_solution"
#: The `model` column of template-solution rows: no model wrote them.
MODEL = "template-program"

VerifyMany = Callable[[list[tuple[str, str]]], list[Verdict]]


@dataclass(frozen=True)
class SolutionRowsResult:
    """Template-solution Samples, one Rejected row per instance not used, and counts ('kept' and drop reasons)."""

    samples: list[Sample]
    rejected: list[Rejected]
    counts: dict[str, int]


def _is_boxed_at_end(solution: str) -> bool:
    lines = [line for line in solution.strip().splitlines() if line.strip()]
    return bool(lines) and "\\boxed{" in lines[-1]


def solution_samples(
    problems: Sequence[Problem],
    *,
    verify_many: VerifyMany,
    prompt: str = "solve_cot",
    verifier: str = "",
    count_tokens: Callable[[str], int] = lambda text: len(text.split()),
) -> SolutionRowsResult:
    """Turn template instances into verified Sample rows whose response is the rendered solution.

    Reads problem_id, problem, answer, source, solution; the Samples add
    response (= solution), the verdict columns (verdict 'correct'), strategy
    'template-solution', model 'template-program' and `prompt_hash` of
    `prompt` rendered with the problem (the user turn the row is exported
    with). Same input, same output; `problems` is not changed.
    """
    counts: Counter[str] = Counter()
    rejected: list[Rejected] = []
    candidates: list[Problem] = []
    for problem in problems:
        reason = "no_solution" if not problem.solution else None
        if reason is None and not _is_boxed_at_end(problem.solution):
            reason = "answer_not_boxed_at_end"
        if reason is None:
            candidates.append(problem)
            continue
        counts[reason] += 1
        rejected.append(Rejected(stage=STAGE, row_id=problem.problem_id, problem_id=problem.problem_id, reason=reason))
    verdicts = verify_many([(p.answer, p.solution) for p in candidates])
    samples = []
    for problem, verdict in zip(candidates, verdicts, strict=True):
        if verdict.is_correct is not True:
            counts[verdict.reason] += 1
            detail = f"extracted={verdict.extracted!r}, reference={problem.answer!r}"
            rejected.append(
                Rejected(stage=STAGE, row_id=problem.problem_id, problem_id=problem.problem_id, reason=verdict.reason, detail=detail)
            )
            continue
        samples.append(
            judged_sample(
                problem,
                verdict,
                sample_id=stable_id(problem.problem_id, TEMPLATE_SOLUTION_STRATEGY),
                response=problem.solution,
                finish_reason="stop",
                n_completion_tokens=count_tokens(problem.solution),
                verifier=verifier,
                model=MODEL,
                sampling_json="{}",
                prompt_hash=prompt_hash(prompts.chat(prompt, problem=problem.problem)),
                strategy=TEMPLATE_SOLUTION_STRATEGY,
            )
        )
    counts["kept"] = len(samples)
    return SolutionRowsResult(samples=samples, rejected=rejected, counts=dict(counts))

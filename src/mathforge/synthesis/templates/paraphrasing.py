"""Paraphrase (TeLL): an LLM rewords an instance, and the rewording is kept only when checked (`paraphrase`).

How a paraphrase is accepted. The paraphraser is not trusted; a rewording
of an instance is kept only when, in order:
1. the reply holds a problem text (`parse_paraphrase`) that is not the
   original after normalization;
2. its numbers are the instance's numbers as values: digits, number words,
   fractions and percents (`paraphrase_check.number_change`);
3. a fresh solver that sees only the rewording writes `paraphrase.solve.n`
   programs (`parse_solve_program`), each run in the sandbox, and at least
   `paraphrase.min_reproducing` of their answers verify against the
   instance's answer (`paraphrase_check.solve_outcome`). A rewording that
   keeps the numbers but changes the mathematics (roles swapped, "gives
   away" -> "receives") fails here, since the solver reads it as written.
The first accepted rewording per instance becomes a new row; every refused
reply is a Rejected row with its reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

from mathforge.generation.base import Generator
from mathforge.prompts import chat
from mathforge.records import Problem, Rejected, stable_id
from mathforge.synthesis.paraphrase_check import SolveAttempt, number_change, solve_outcome
from mathforge.synthesis.templates.batches import answer_text, run_batches
from mathforge.synthesis.templates.config import PARAPHRASE_STAGE, TemplateSynthesisConfig, count_reasons, rejected_row
from mathforge.synthesis.templates.parsing import FENCE, check_program
from mathforge.synthesis.templates.rendering import answer_type_of
from mathforge.synthesis.templates.slots import TemplateError

if TYPE_CHECKING:
    from mathforge.sandbox import SandboxPool
    from mathforge.verify import VerifyConfig


@dataclass(frozen=True)
class ParaphraseResult:
    """Accepted paraphrases (new rows), one Rejected row per refused reply, and counts by reason.

    `n_solutions` independent programs were run for rewordings that passed
    the number check; `n_reproducing` of them reproduced the answer.
    """

    problems: list[Problem]
    rejected: list[Rejected]
    counts: dict[str, int] = field(default_factory=dict)
    n_solutions: int = 0
    n_reproducing: int = 0


def parse_paraphrase(reply: str) -> str:
    """The problem text of a paraphrase reply; raise TemplateError on an empty text.

    The text is what precedes any fenced block (a program the model adds
    anyway is ignored: it is never run), without a leading 'Problem:' label.
    """
    text = reply.split("```", 1)[0].strip()
    text = re.sub(r"^\**\s*(rewritten\s+)?problem\s*:?\s*\**\s*", "", text, flags=re.I).strip()
    if not text:
        raise TemplateError("unparsable_reply", "no problem text")
    return text


def parse_solve_program(reply: str) -> str:
    """The zero-argument `solve` program of an independent-solve reply; raise TemplateError when there is none."""
    blocks = [(language.lower(), body) for language, body in FENCE.findall(reply)]
    program = next(
        (body for language, body in blocks if language in ("python", "py", "") and "def solve" in body), None
    )
    if program is None:
        raise TemplateError("missing_program", "no ```python block defining solve()")
    check_program(program, set())
    return program


def _solve_attempts(
    candidates: Sequence[tuple[Problem, str]],
    generator: Generator,
    *,
    pool: SandboxPool,
    config: TemplateSynthesisConfig,
    verify_config: VerifyConfig,
) -> list[list[SolveAttempt]]:
    """Have a fresh solver write `solve.n` programs per reworded text (text only), run them, compare answers."""
    from mathforge.verify import compare_answers

    prompts = [chat("solve_program", problem=text) for _, text in candidates]
    replies = generator.generate(prompts, config.paraphrase.solve.generation_params())
    attempts: list[list[SolveAttempt | None]] = []
    batches, places = [], []
    for number, completions in enumerate(replies):
        row: list[SolveAttempt | None] = []
        for index, completion in enumerate(completions):
            try:
                batches.append((parse_solve_program(completion.text), [{}]))
                places.append((number, index))
                row.append(None)
            except TemplateError as error:
                row.append(SolveAttempt(answer=None, reproduces=False, failure=error.reason))
        attempts.append(row)
    outcomes = run_batches(pool, batches, timeout_s=config.timeout_s)
    for (number, index), (outcome,) in zip(places, outcomes, strict=True):
        problem = candidates[number][0]
        if outcome.error is not None:
            attempts[number][index] = SolveAttempt(answer=None, reproduces=False, failure="program_error")
            continue
        answer = answer_text(outcome, answer_type_of(problem.answer) or "decimal", config.max_decimal_places)
        reproduces = answer is not None and compare_answers(problem.answer, answer, verify_config).is_correct is True
        attempts[number][index] = SolveAttempt(answer=outcome.answer, reproduces=reproduces)
    return [[attempt for attempt in row if attempt is not None] for row in attempts]


def paraphrase(
    problems: Sequence[Problem],
    generator: Generator,
    *,
    pool: SandboxPool,
    config: TemplateSynthesisConfig,
    verify_config: VerifyConfig,
) -> ParaphraseResult:
    """Reword instances with an LLM; keep a rewording whose numbers and independently solved answer are unchanged.

    Reads `problem_id`, `problem`, `answer` (and copies `program`,
    `template_id`, `variables_json`, `seed_problem_id`, `source`). The
    `paraphrase_problem` prompt asks for the rewritten problem only. A reply
    is rejected when it cannot be parsed ('unparsable_reply'), repeats the
    problem ('paraphrase_unchanged'), or its numbers differ as values from
    the instance's ('paraphrase_number_changed': digits, number words,
    fractions and percents compared by value; see `paraphrase_check`). A
    surviving rewording is given alone to the `solve_program` prompt
    (`paraphrase.solve.n` programs, no original in context); each program runs
    in the sandbox and its answer is verified against the instance's. Fewer
    than `paraphrase.min_reproducing` reproducing programs reject it:
    'paraphrase_answer_changed' when some program gave another answer,
    'solve_failed' when none ran to an answer. The first accepted reply per
    problem becomes a new row (problem_id = stable_id(problem_id,
    'paraphrase', text), source '<source>+paraphrase', `solution` None: a
    templated solution would describe the old wording); later ones are
    'surplus_paraphrase'.
    """
    from mathforge.curate.text import normalize_texts

    chosen = list(problems if config.paraphrase.max_problems is None else problems[: config.paraphrase.max_problems])
    if not config.paraphrase.enabled or not chosen:
        return ParaphraseResult(problems=[], rejected=[])
    prompts = [chat("paraphrase_problem", problem=problem.problem) for problem in chosen]
    replies = generator.generate(prompts, config.paraphrase.params.generation_params())

    rejected: list[Rejected] = []
    candidates: list[tuple[Problem, str]] = []
    indices: list[int] = []
    for problem, completions in zip(chosen, replies, strict=True):
        original_key = normalize_texts([problem.problem]).to_pylist()[0]
        for index, completion in enumerate(completions):
            try:
                text = parse_paraphrase(completion.text)
            except TemplateError as error:
                failure: tuple[str, str | None] | None = (error.reason, error.detail)
            else:
                changed = number_change(problem.problem, text)
                if normalize_texts([text]).to_pylist()[0] == original_key:
                    failure = ("paraphrase_unchanged", None)
                elif changed is not None:
                    failure = ("paraphrase_number_changed", changed)
                else:
                    failure = None
            if failure is not None:
                rejected.append(
                    rejected_row(PARAPHRASE_STAGE, f"{problem.problem_id}#{index}", problem.problem_id, *failure)
                )
                continue
            candidates.append((problem, text))
            indices.append(index)

    accepted: dict[str, Problem] = {}
    attempts = _solve_attempts(candidates, generator, pool=pool, config=config, verify_config=verify_config)
    for (problem, text), index, tries in zip(candidates, indices, attempts, strict=True):
        failure = solve_outcome(tries, min_reproducing=config.paraphrase.min_reproducing)
        if failure is None and problem.problem_id in accepted:
            failure = ("surplus_paraphrase", f"already paraphrased as {accepted[problem.problem_id].problem_id}")
        if failure is None:
            accepted[problem.problem_id] = problem.model_copy(
                update={
                    "problem_id": stable_id(problem.problem_id, "paraphrase", text),
                    "problem": text,
                    "source": f"{problem.source}+paraphrase",
                    "solution": None,
                }
            )
            continue
        rejected.append(rejected_row(PARAPHRASE_STAGE, f"{problem.problem_id}#{index}", problem.problem_id, *failure))
    return ParaphraseResult(
        problems=list(accepted.values()),
        rejected=rejected,
        counts=count_reasons(rejected),
        n_solutions=sum(len(tries) for tries in attempts),
        n_reproducing=sum(attempt.reproduces for tries in attempts for attempt in tries),
    )

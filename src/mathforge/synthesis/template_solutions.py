"""Template instances as SFT rows, no LLM needed (TemplateGSM, Zhang et al., 2024; InfinityMATH, Zhang et al., 2024).

Each instance of a template (`templates.instantiate`) carries what TemplateGSM
ships per problem, both computed by the template's program in the sandbox:

- a **natural-language solution** rendered from the template's solution text,
  every number in it, the answer included, computed by the program
  (`solution_samples`, strategy 'template-solution', row kind
  'template-solution');
- a **code solution** (`code_samples`, strategy 'template-code', row kind
  'tool'): the template's program followed by one line that prints the answer
  for the instance's slot values, its real sandbox output as a `tool` turn,
  then the answer boxed. This is the program-of-thought row of InfinityMATH
  and TemplateGSM: the learner copies the problem's numbers into a program
  that is the same for every instance, and the sandbox does the arithmetic,
  so what it must learn is the mapping from wording to program, which a
  small model can learn where it cannot learn multi-digit arithmetic. The
  user turn is `prompts/solve_with_code.jinja` (`CODE_PROMPT`); evaluate
  such a model with `evaluate`'s `tools` section, which runs its code the
  same way.

A row is kept only when its text ends with the answer in a \\boxed{} that the
verifier extracts and judges equal to the reference, so these rows meet the
same bar as sampled ones. Without a tokenizer, `n_completion_tokens` counts
whitespace-separated words.

Drop reasons: 'no_solution' (text) / 'no_program' (code),
'answer_not_boxed_at_end' (text), 'program_failed' (code: the printing
line did not run cleanly), then the verdict's own reason for rows whose final
answer is not verified correct ('no_answer_found', 'mismatch', ...).
"""

from __future__ import annotations

import ast
import json
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

from mathforge import prompts
from mathforge.conversation import CODE_PROMPT, TEMPLATE_CODE_STRATEGY, TEMPLATE_SOLUTION_STRATEGY
from mathforge.generation.base import prompt_hash
from mathforge.records import Problem, Rejected, Sample, Verdict, judged_sample, stable_id
from mathforge.synthesis.tool_loop import ToolLoopConfig, output_block, shown_output, to_turns

if TYPE_CHECKING:
    from mathforge.sandbox import SandboxPool

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
    rows = _Rows()
    candidates: list[tuple[Problem, str]] = []
    for problem in problems:
        if not problem.solution:
            rows.drop(problem, "no_solution")
        elif not _is_boxed_at_end(problem.solution):
            rows.drop(problem, "answer_not_boxed_at_end")
        else:
            candidates.append((problem, problem.solution))
    return rows.verified(
        candidates, verify_many, strategy=TEMPLATE_SOLUTION_STRATEGY, prompt=prompt, verifier=verifier, count_tokens=count_tokens
    )


def code_solution(problem: Problem) -> str:
    """An instance's code solution: its template's program, then a line printing the answer for its slot values.

    Arguments follow `solve`'s parameter order, values as Python literals;
    a `solve` that returns a dict literal has its "answer" printed.

    >>> code_solution(Problem(problem_id="p", problem="", answer="5", source="t",
    ...     program="def solve(b, a):\\n    return a + b", variables_json='{"a": 2, "b": 3}'))
    'def solve(b, a):\\n    return a + b\\n\\nprint(solve(b=3, a=2))\\n'
    """
    solve = next(
        node for node in ast.parse(problem.program).body if isinstance(node, ast.FunctionDef) and node.name == "solve"
    )
    values = json.loads(problem.variables_json)
    call = f"solve({', '.join(f'{arg.arg}={values[arg.arg]!r}' for arg in solve.args.args)})"
    if any(isinstance(node, ast.Return) and isinstance(node.value, ast.Dict) for node in ast.walk(solve)):
        call += '["answer"]'
    return f"{problem.program.rstrip()}\n\nprint({call})\n"


def code_samples(
    problems: Sequence[Problem],
    *,
    pool: SandboxPool,
    verify_many: VerifyMany,
    verifier: str = "",
    count_tokens: Callable[[str], int] = lambda text: len(text.split()),
) -> SolutionRowsResult:
    """Turn template instances into verified tool-trace rows: code, its real output, the answer boxed.

    Reads problem_id, problem, answer, source, program, variables_json; runs
    each `code_solution` in the sandbox. The Samples add response (the fenced
    trace: code block, output block, "The answer is \\boxed{<output>}."),
    trace_json (the same as assistant / tool / assistant turns), the verdict
    columns, strategy 'template-code', model 'template-program' and the
    `prompt_hash` of `CODE_PROMPT`. The output shown is formatted as the tool
    loop shows one (`tool_loop.shown_output`), so a model evaluated with
    tools sees what it was trained on. Same input, same output.
    """
    rows = _Rows()
    runnable = []
    for problem in problems:
        if problem.program and problem.variables_json:
            runnable.append((problem, code_solution(problem)))
        else:
            rows.drop(problem, "no_program")
    loop = ToolLoopConfig()
    results = pool.run_many([code for _, code in runnable], timeout_s=loop.cell_timeout_s)
    candidates: list[tuple[Problem, str]] = []
    for (problem, code), result in zip(runnable, results, strict=True):
        output = shown_output(result, ended_session=False, config=loop)
        if result.status != "ok" or "\n" in output:
            rows.drop(problem, "program_failed", f"status={result.status}, output={output[-200:]!r}")
            continue
        candidates.append((problem, f"```python\n{code}```\n{output_block(output)}The answer is \\boxed{{{output}}}."))
    return rows.verified(
        candidates, verify_many, strategy=TEMPLATE_CODE_STRATEGY, prompt=CODE_PROMPT, verifier=verifier, count_tokens=count_tokens
    )


class _Rows:
    """Rows being made: the Rejected rows and drop counts so far, then the verified Samples."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.rejected: list[Rejected] = []

    def drop(self, problem: Problem, reason: str, detail: str | None = None) -> None:
        self.counts[reason] += 1
        self.rejected.append(
            Rejected(stage=STAGE, row_id=problem.problem_id, problem_id=problem.problem_id, reason=reason, detail=detail)
        )

    def verified(
        self,
        candidates: list[tuple[Problem, str]],
        verify_many: VerifyMany,
        *,
        strategy: str,
        prompt: str,
        verifier: str,
        count_tokens: Callable[[str], int],
    ) -> SolutionRowsResult:
        """Verify each (problem, response); keep the correct ones as Samples of `strategy`, drop the others."""
        verdicts = verify_many([(problem.answer, response) for problem, response in candidates])
        samples = []
        for (problem, response), verdict in zip(candidates, verdicts, strict=True):
            if verdict.is_correct is not True:
                self.drop(problem, verdict.reason, f"extracted={verdict.extracted!r}, reference={problem.answer!r}")
                continue
            is_trace = strategy == TEMPLATE_CODE_STRATEGY
            samples.append(
                judged_sample(
                    problem,
                    verdict,
                    sample_id=stable_id(problem.problem_id, strategy),
                    response=response,
                    finish_reason="stop",
                    n_completion_tokens=count_tokens(response),
                    verifier=verifier,
                    model=MODEL,
                    sampling_json="{}",
                    prompt_hash=prompt_hash(prompts.chat(prompt, problem=problem.problem)),
                    strategy=strategy,
                    n_rounds=1 if is_trace else None,
                    trace_json=json.dumps(to_turns(response), ensure_ascii=False) if is_trace else None,
                )
            )
        self.counts["kept"] = len(samples)
        return SolutionRowsResult(samples=samples, rejected=self.rejected, counts=dict(self.counts))

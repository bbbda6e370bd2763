"""Template instances as SFT rows: every authored template's solutions verify; bad ones are dropped with reasons."""

import json
from pathlib import Path

import pytest

from mathforge.records import Problem
from mathforge.sandbox import SandboxConfig, SandboxPool
from mathforge.synthesis.template_files import load_authored_templates
from mathforge.synthesis.template_solutions import solution_samples
from mathforge.synthesis.templates import TemplateSynthesisConfig, instantiate
from mathforge.verify import verify_answer

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "configs" / "templates"


def verify_many(pairs):
    return [verify_answer(reference, response) for reference, response in pairs]


@pytest.fixture(scope="module")
def instances() -> list[Problem]:
    templates = load_authored_templates(TEMPLATES_DIR)
    with SandboxPool(SandboxConfig(n_workers=1)) as pool:
        made = instantiate(templates, n_per_template=5, seed=3, pool=pool, config=TemplateSynthesisConfig())
    return made.problems


def test_every_authored_instance_becomes_a_verified_row(instances):
    result = solution_samples(instances, verify_many=verify_many, verifier="v")

    assert result.counts == {"kept": len(instances)} and len(instances) == 12 * 5
    for problem, sample in zip(instances, result.samples):
        assert sample.response == problem.solution and sample.answer == problem.answer
        assert (sample.verdict, sample.strategy, sample.model, sample.verifier) == ("correct", "template-solution", "template-program", "v")
        assert sample.n_completion_tokens == len(problem.solution.split())
    assert len({s.sample_id for s in result.samples}) == len(instances)
    assert solution_samples(instances, verify_many=verify_many, verifier="v") == result


def test_solutions_that_do_not_end_with_the_verified_boxed_answer_are_dropped(instances):
    good = instances[0]
    problems = [
        good,
        good.model_copy(update={"problem_id": "none", "solution": None}),
        good.model_copy(update={"problem_id": "early", "solution": good.solution + "\nThat is all."}),
        good.model_copy(update={"problem_id": "wrong", "answer": good.answer + "1"}),
    ]

    result = solution_samples(problems, verify_many=verify_many)

    assert [s.problem_id for s in result.samples] == [good.problem_id]
    assert {r.row_id: r.reason for r in result.rejected} == {
        "none": "no_solution",
        "early": "answer_not_boxed_at_end",
        "wrong": verify_answer(good.answer + "1", good.solution).reason,
    }
    assert verify_answer(good.answer + "1", good.solution).is_correct is False
    assert result.counts["kept"] == 1 and sum(result.counts.values()) == len(problems)


def test_every_authored_instance_becomes_a_code_row_with_its_real_output(instances):
    from mathforge.conversation import row_kind
    from mathforge.synthesis.template_solutions import code_samples, code_solution

    with SandboxPool(SandboxConfig(n_workers=1)) as pool:
        result = code_samples(instances, pool=pool, verify_many=verify_many, verifier="v")
        reruns = pool.run_many([code_solution(p) for p in instances])

    assert result.counts == {"kept": len(instances)}
    for problem, sample, rerun in zip(instances, result.samples, reruns):
        code, tool, final = json.loads(sample.trace_json)
        assert (code["role"], tool["role"], final["role"]) == ("assistant", "tool", "assistant")
        assert code["content"] == f"```python\n{code_solution(problem)}```\n" and problem.program in code["content"]
        assert tool["content"] == rerun.stdout.strip() and verify_answer(problem.answer, rerun.stdout).is_correct
        assert final["content"] == f"The answer is \\boxed{{{tool['content']}}}."
        assert (sample.strategy, row_kind(sample.strategy), sample.verdict) == ("template-code", "tool", "correct")
    assert len({s.sample_id for s in result.samples}) == len(instances)


def test_code_rows_drop_instances_without_a_program_or_whose_program_fails(instances):
    from mathforge.synthesis.template_solutions import code_samples

    good = instances[0]
    signature = good.program.split("def solve(", 1)[1].split(")", 1)[0]
    problems = [
        good,
        good.model_copy(update={"problem_id": "none", "program": None}),
        good.model_copy(update={"problem_id": "raises", "program": f"def solve({signature}):\n    raise ValueError('no')\n"}),
        good.model_copy(update={"problem_id": "wrong", "answer": good.answer + "1"}),
    ]

    with SandboxPool(SandboxConfig(n_workers=1)) as pool:
        result = code_samples(problems, pool=pool, verify_many=verify_many)

    assert [s.problem_id for s in result.samples] == [good.problem_id]
    reasons = {r.row_id: r.reason for r in result.rejected}
    assert reasons == {"none": "no_program", "raises": "program_failed", "wrong": "numeric_mismatch"}
    assert "ValueError: no" in next(r.detail for r in result.rejected if r.row_id == "raises")

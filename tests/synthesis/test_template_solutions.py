"""Template instances as SFT rows: every authored template's solutions verify; bad ones are dropped with reasons."""

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

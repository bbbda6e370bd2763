"""CoSC traces: program -> output -> verification -> conclusion or another stage, checked and counted exactly."""

from __future__ import annotations

import re

import pytest

from mathforge import prompts
from mathforge.generation.base import prompt_hash
from mathforge.generation.scripted import ScriptedGenerator
from mathforge.records import Problem
from mathforge.sandbox import SandboxConfig, SandboxPool
from mathforge.synthesis.self_correction import SelfCorrectionConfig, run_tool_traces
from mathforge.synthesis.tool_loop import check_cosc_shape
from mathforge.verify import verify_answer

OUTPUTS = re.compile(r"```output\n(.*?)\n```\n", re.DOTALL)
REVISE = "```python\nprint(17 * 23)\n```\n"

#: By number of outputs seen: a first program that adds instead of multiplying, then the stage's continuation.
STAGES = {
    "[revised]": [
        "```python\nprint(17 + 23)\n```\n",
        "Verification: the question asks for a product but the program adds. Revising.\n" + REVISE,
        "Verification: the program multiplies 17 by 23 and the output is the product.\nConclusion: \\boxed{391}.",
    ],
    "[direct]": [REVISE, "Verification: the program computes the product asked for.\nConclusion: \\boxed{391}."],
    "[unverified]": [REVISE, "Conclusion: \\boxed{391}."],
    "[unconcluded]": [REVISE, "Verification: it matches the question. The answer is \\boxed{391}."],
    "[skipped]": ["The product is \\boxed{391}."],
}


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(SandboxConfig(n_workers=2)) as pool:
        yield pool


def script(text, index, params):
    for marker, replies in STAGES.items():
        if marker in text:
            return replies[min(len(OUTPUTS.findall(text)), len(replies) - 1)]
    return None


def test_cosc_traces_keep_only_the_stage_shape_with_exact_counts(pool):
    problems = [
        Problem(problem_id=m.strip("[]"), problem=f"{m} What is 17 times 23?", answer="391", source="test") for m in STAGES
    ]

    result = run_tool_traces(
        problems,
        ScriptedGenerator(script=script),
        pool=pool,
        verify_many=lambda pairs: [verify_answer(r, s) for r, s in pairs],
        config=SelfCorrectionConfig(mode="cosc"),
    )

    assert result.counts == {
        "attempted": 5,
        "solved": 5,
        "kept": 2,
        "missing_verification": 1,
        "missing_conclusion": 1,
        "no_code_run": 1,
    }
    kept = {s.problem_id: s for s in result.kept}
    assert (kept["revised"].n_rounds, kept["revised"].n_corrections) == (2, 1)
    assert (kept["direct"].n_rounds, kept["direct"].n_corrections) == (1, 0)
    assert OUTPUTS.findall(kept["revised"].response) == ["40", "391"]
    assert all(s.strategy == "cosc" for s in result.kept + result.dropped)
    # The prompt the traces answered is the CoSC one, which asks for that shape.
    assert kept["direct"].prompt_hash == prompt_hash(prompts.chat("cosc_verify", problem=problems[1].problem))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\\boxed{1}", (False, "no_code_run")),
        ("```python\nprint(1)\n```\n```output\n1\n```\nVerification: fine.\nConclusion: \\boxed{1}", (True, "cosc_shape")),
        ("```python\nprint(1)\n```\n```output\n1\n```\nConclusion: \\boxed{1}", (False, "missing_verification")),
        (
            "```python\nprint(1)\n```\n```output\n1\n```\n```python\nprint(2)\n```\n```output\n2\n```\n"
            "Verification: fine.\nConclusion: \\boxed{2}",
            (False, "missing_verification"),
        ),
        ("```python\nprint(1)\n```\n```output\n1\n```\nVerification: fine, \\boxed{1}", (False, "missing_conclusion")),
    ],
    ids=["no_code", "complete", "no_verification", "second_stage_without_first_verification", "no_conclusion"],
)
def test_check_cosc_shape(text, expected):
    assert check_cosc_shape(text) == expected

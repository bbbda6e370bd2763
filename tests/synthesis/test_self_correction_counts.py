"""Correction from real errors: exact attempted / corrected / kept / dropped-by-reason counts (scripted model, real sandbox)."""

from __future__ import annotations

import json
import re

import pytest

from mathforge.export import sft_table
from mathforge.generation.scripted import ScriptedGenerator, ScriptedProblem
from mathforge.records import SAMPLE_SCHEMA, Problem, Sample, to_table
from mathforge.sandbox import SandboxConfig, SandboxPool
from mathforge.synthesis.self_correction import (
    SelfCorrectionConfig,
    correct_attempts,
    run_self_correction,
    select_attempts,
)
from mathforge.verify import verify_answer

OUTPUTS = re.compile(r"```output\n(.*?)\n```\n", re.DOTALL)
REVIEW = "is incorrect. Review your solution"


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(SandboxConfig(n_workers=2)) as pool:
        yield pool


def verify_many(pairs):
    return [verify_answer(reference, response) for reference, response in pairs]


def attempt(marker: str, answer: str, wrong: str, *, verdict: str = "incorrect", index: int = 0) -> Sample:
    """A DART-style negative: the model's own wrong response to problem `marker`."""
    return Sample(
        sample_id=f"{marker.strip('[]')}-{index}",
        problem_id=marker.strip("[]"),
        problem=f"{marker} Compute the value.",
        answer=answer,
        source="test",
        response=f"Step 1: I multiply the numbers.\nSo the answer is \\boxed{{{wrong}}}.",
        finish_reason="stop",
        n_completion_tokens=12,
        extracted_answer=wrong,
        verdict=verdict,
        verdict_reason="mismatch" if verdict == "incorrect" else verdict,
        model="scripted",
        sampling_json="{}",
        prompt_hash="0" * 16,
        sample_index=index,
        strategy="dart-uniform",
    )


def answer_last_output(outputs):
    return f"The corrected program printed {outputs[-1]}, so the answer is \\boxed{{{outputs[-1]}}}."


#: For each problem, the correction turns the scripted model writes, by number of outputs seen so far.
CORRECTIONS = {
    "[fix]": ["Step 1 is wrong: 17 * 23 is not 381.\n```python\nprint(17 * 23)\n```\n", answer_last_output],
    "[wrong]": ["```python\nprint(2 ** 10 - 1)\n```\n", answer_last_output],
    "[crash_fix]": ["```python\nprint(100 / zero)\n```\n", "```python\nprint(100 // 4)\n```\n", answer_last_output],
    "[crash_giveup]": ["```python\nprint(undefined_total)\n```\n", "I cannot tell."],
    "[loop]": ["```python\nn = 0\nwhile True:\n    n += 1\n```\n", "It takes too long; I guess \\boxed{7}."],
    "[rounds]": ["```python\nprint(1)\n```\n"],
    "[long]": [" ".join(["thinking"] * 300)],
    "[fake]": ["Running it gives:\n```output\n42\n```\nso \\boxed{42}."],
    "[random]": ["```python\nimport os\nprint(os.urandom(8).hex(), 3 * 4)\n```\n", "The product is 12: \\boxed{12}."],
}


def correction_script(text, index, params):
    if REVIEW not in text:
        return None
    for marker, replies in CORRECTIONS.items():
        if marker in text:
            outputs = OUTPUTS.findall(text)
            reply = replies[min(len(outputs), len(replies) - 1)]
            return reply(outputs) if callable(reply) else reply
    return None


NEGATIVES = [
    attempt("[fix]", "391", "381"),
    attempt("[wrong]", "1024", "1000"),
    attempt("[crash_fix]", "25", "20"),
    attempt("[crash_giveup]", "30", "31"),
    attempt("[loop]", "8", "9"),
    attempt("[rounds]", "5", "4"),
    attempt("[long]", "6", "7"),
    attempt("[fake]", "42", "41"),
    attempt("[random]", "12", "13"),
    # Not tried: a correct response, an unjudgeable one, and a second wrong attempt at [fix].
    attempt("[fix]", "391", "391", verdict="correct", index=1),
    attempt("[wrong]", "1024", "", verdict="unjudgeable", index=1),
    attempt("[fix]", "391", "380", index=2),
]


def test_counts_are_exact_for_every_way_a_correction_can_end(pool):
    config = SelfCorrectionConfig(
        mode="correction", max_rounds=3, max_tokens_per_round=200, max_total_tokens=400, cell_timeout_s=1.0
    )
    generator = ScriptedGenerator(script=correction_script)

    result = correct_attempts(
        to_table(NEGATIVES, SAMPLE_SCHEMA), generator, pool=pool, verify_many=verify_many, config=config, verifier="v"
    )

    assert result.counts == {
        "attempted": 9,
        "corrected": 3,  # fix, crash_fix, random
        "kept": 2,
        "final_answer_wrong": 1,
        "no_final_answer": 1,
        "code_timeout_unresolved": 1,
        "max_rounds_exceeded": 1,
        "truncated": 1,
        "fabricated_output": 1,
        "output_mismatch": 1,  # random: its correct answer stands, but its output cannot be reproduced
        "skipped_not_incorrect": 2,
        "skipped_over_problem_cap": 1,
    }
    assert {r.row_id: r.reason for r in result.rejected} == {
        "wrong-0": "final_answer_wrong",
        "crash_giveup-0": "no_final_answer",
        "loop-0": "code_timeout_unresolved",
        "rounds-0": "max_rounds_exceeded",
        "long-0": "truncated",
        "fake-0": "fabricated_output",
        "random-0": "output_mismatch",
    }
    assert all(r.stage == "self_correction" for r in result.rejected)
    kept = {s.problem_id: s for s in result.kept}
    assert set(kept) == {"fix", "crash_fix"}
    assert (kept["fix"].n_rounds, kept["fix"].n_corrections) == (1, 1)
    assert (kept["crash_fix"].n_rounds, kept["crash_fix"].n_corrections) == (2, 2)
    assert OUTPUTS.findall(kept["crash_fix"].response) == ["NameError: name 'zero' is not defined", "25"]
    assert all(s.verdict == "correct" and s.strategy == "self-correction" and s.verifier == "v" for s in result.kept)
    assert result.stats["cells_run"] == 1 + 1 + 2 + 1 + 1 + 3 + 1
    assert result.stats["cells_timeout"] == 1 and result.stats["cells_error"] == 2


def test_a_kept_correction_stores_the_attempt_and_the_request_before_its_own_turns(pool):
    config = SelfCorrectionConfig(mode="correction", format="messages")
    generator = ScriptedGenerator(script=correction_script)

    result = correct_attempts([attempt("[fix]", "391", "381")], generator, pool=pool, verify_many=verify_many, config=config)

    (sample,) = result.kept
    turns = json.loads(sample.trace_json)
    assert [t["role"] for t in turns] == ["assistant", "user", "assistant", "tool", "assistant"]
    assert turns[0]["content"] == NEGATIVES[0].response
    assert turns[1]["content"].startswith("Your final answer, 381, is incorrect.")
    assert turns[3]["content"] == "391"
    assert sample.response == turns[2]["content"] + "```output\n391\n```\n" + turns[4]["content"]
    # Exported, the attempt and the verifier's feedback are context; only the correction is learned.
    (row,) = sft_table(to_table([sample], SAMPLE_SCHEMA), prompt="solve_cot", system_prompt=None).to_pylist()
    assert row["row_kind"] == "correction"
    assert [m["role"] for m in row["prompt"]] == ["user", "assistant", "user"] and row["prompt"][1:] == turns[:2]
    assert row["completion"] == turns[2:]


def test_intrinsic_cosc_traces_with_tool_turns_are_the_defaults():
    config = SelfCorrectionConfig()
    assert (config.mode, config.format) == ("cosc", "messages")


def test_a_correction_without_code_needs_no_sandbox():
    config = SelfCorrectionConfig(mode="correction", use_code=False)

    def script(text, index, params):
        return "Step 1 is wrong: 17 * 23 = 391, so \\boxed{391}." if "is incorrect. Review" in text else None

    result = correct_attempts(
        [attempt("[fix]", "391", "381"), attempt("[wrong]", "1024", "1000")],
        ScriptedGenerator(script=script),
        pool=None,
        verify_many=verify_many,
        config=config,
    )

    assert result.counts == {"attempted": 2, "corrected": 1, "kept": 1, "final_answer_wrong": 1}
    (sample,) = result.kept
    assert (sample.n_rounds, sample.n_corrections) == (0, 1)
    assert [t["role"] for t in json.loads(sample.trace_json)] == ["assistant", "user", "assistant"]


def test_the_attempt_budget_spreads_round_robin_over_problems():
    samples = [attempt(f"[p{k}]", "1", str(2 + i), index=i) for k in range(3) for i in range(3)]
    config = SelfCorrectionConfig(max_attempts=4, max_attempts_per_problem=2)

    selected, skipped = select_attempts(samples, config)

    assert [s.sample_id for s in selected] == ["p0-0", "p1-0", "p2-0", "p0-1"]
    assert skipped == {"skipped_over_problem_cap": 3, "skipped_over_cap": 2}


def test_fresh_attempts_are_sampled_then_corrected(pool):
    problems = [
        Problem(problem_id=f"f{k}", problem=f"[fresh{k}] What is {k} + 40?", answer=str(k + 40), source="test")
        for k in range(3)
    ]

    def script(text, index, params):
        if "is incorrect. Review" not in text:
            return None  # the attempt itself: the scripted model's own (wrong) solution
        match = re.search(r"What is (\d+) \+ 40", text)
        outputs = OUTPUTS.findall(text)
        return answer_last_output(outputs) if outputs else f"```python\nprint({match.group(1)} + 40)\n```\n"

    generator = ScriptedGenerator(
        [ScriptedProblem(p.problem_id, p.problem, p.answer) for p in problems],
        pass_rate=0.0,
        script=script,
        malformed_rate=0.0,
        truncated_rate=0.0,
    )
    config = SelfCorrectionConfig(mode="correction", source="fresh", fresh_samples=2)

    result = run_self_correction(problems, [], generator, pool=pool, verify_many=verify_many, config=config)

    # 2 wrong attempts per problem, one corrected per problem (max_attempts_per_problem=1).
    assert result.counts == {"attempted": 3, "corrected": 3, "kept": 3, "skipped_over_problem_cap": 3}
    assert [s.problem_id for s in result.kept] == ["f0", "f1", "f2"]
    assert all(s.n_corrections == 1 and s.n_rounds == 1 for s in result.kept)


def test_code_modes_must_run_code():
    with pytest.raises(ValueError, match="use_code"):
        SelfCorrectionConfig(mode="tool", use_code=False)

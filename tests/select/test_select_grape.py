"""GRAPE logic against the Generator protocol: a table-driven scorer and the scripted generator."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pytest

from mathforge.generation.base import LogLikelihood, Prompt, TokenUsage
from mathforge.generation.scripted import ScriptedGenerator, ScriptedProblem, prompt_text
from mathforge.select import select_grape


class TableScorer:
    """A Generator whose log-likelihoods are looked up by response text (sum, n_tokens)."""

    model_id = "table-scorer"

    def __init__(self, scores: dict[str, tuple[float, int]]) -> None:
        self.scores = scores
        self.usage = TokenUsage()
        self.pairs: list[tuple[Prompt, str]] = []

    def generate(self, prompts, params):
        raise NotImplementedError("GRAPE only scores")

    def loglikelihood(self, pairs: Sequence[tuple[Prompt, str]]) -> list[LogLikelihood]:
        self.pairs.extend(pairs)
        return [LogLikelihood(*self.scores[response]) for _, response in pairs]


def chat_prompt(problem: str) -> Prompt:
    return [{"role": "system", "content": "Solve it."}, {"role": "user", "content": problem}]


ROWS = [
    # problem A: the long response has the best per-token score although its sum is the lowest.
    ("a1", "A", "correct", "short A"),
    ("a2", "A", "correct", "long A"),
    ("a3", "A", "incorrect", "wrong A"),
    # problem B: a tie on per-token score goes to the smaller sample_id.
    ("b2", "B", "correct", "tie B two"),
    ("b1", "B", "correct", "tie B one"),
    # problem C: no correct response at all.
    ("c1", "C", "incorrect", "wrong C"),
    ("c2", "C", None, "unverified C"),
]
SCORES = {
    "short A": (-4.0, 2),  # -2.0 per token
    "long A": (-10.0, 10),  # -1.0 per token: best of A
    "tie B two": (-3.0, 3),
    "tie B one": (-2.0, 2),
}


def grape_table(make_samples):
    return make_samples(
        [
            {"sample_id": sid, "problem_id": pid, "problem": f"problem {pid}", "response": response, "verdict": verdict}
            for sid, pid, verdict, response in ROWS
        ]
    )


def test_keeps_highest_loglik_per_token_among_correct(make_samples):
    scorer = TableScorer(SCORES)
    result = select_grape(grape_table(make_samples), generator=scorer, prompt_fn=chat_prompt)
    assert result.table.column("sample_id").to_pylist() == ["a2", "b1"]
    assert result.table.column("loglik_per_token").to_pylist() == [-1.0, -1.0]
    assert result.table.column("selection_score").to_pylist() == [-1.0, -1.0]
    assert result.table.column("selected_by").to_pylist() == ["grape", "grape"]
    assert result.counts == {"kept": 2, "grape_not_best": 2, "not_correct": 3}
    reasons = dict(zip(result.rejected.column("row_id").to_pylist(), result.rejected.column("reason").to_pylist()))
    assert reasons == {"a1": "grape_not_best", "b2": "grape_not_best", "a3": "not_correct", "c1": "not_correct", "c2": "not_correct"}
    # Only correct responses are scored, each with the generation prompt of its problem.
    assert sorted(response for _, response in scorer.pairs) == sorted(SCORES)
    assert {(prompt[1]["content"], response) for prompt, response in scorer.pairs} == {
        ("problem A", "short A"),
        ("problem A", "long A"),
        ("problem B", "tie B two"),
        ("problem B", "tie B one"),
    }


def test_per_problem_keeps_the_top_few(make_samples):
    result = select_grape(grape_table(make_samples), generator=TableScorer(SCORES), prompt_fn=chat_prompt, per_problem=2)
    assert result.table.column("sample_id").to_pylist() == ["a1", "a2", "b2", "b1"]
    assert result.counts == {"kept": 4, "not_correct": 3}


def test_choice_is_the_argmax_of_scripted_loglikelihoods(make_samples):
    problems = [ScriptedProblem(f"p{i}", f"What is {i} + {i}?", str(2 * i)) for i in range(5)]
    generator = ScriptedGenerator(problems, seed=11)
    rows = [
        {"sample_id": f"p{i}-{j}", "problem_id": p.problem_id, "problem": p.problem, "verdict": "correct",
         "response": f"Attempt {j}: {i} + {i} = {2 * i}. \\boxed{{{2 * i}}}" + " Checked." * j}
        for i, p in enumerate(problems)
        for j in range(4)
    ]
    result = select_grape(make_samples(rows), generator=generator, prompt_fn=chat_prompt)
    for problem in problems:
        candidates = [row for row in rows if row["problem_id"] == problem.problem_id]
        independent = [
            generator.loglikelihood([(chat_prompt(row["problem"]), row["response"])])[0].per_token for row in candidates
        ]
        best = candidates[int(np.argmax(independent))]["sample_id"]
        kept = [sid for sid in result.table.column("sample_id").to_pylist() if sid.startswith(f"{problem.problem_id}-")]
        assert kept == [best]
    assert result.table.num_rows == len(problems)


def test_nan_scores_and_short_answers_are_errors(make_samples):
    table = grape_table(make_samples)
    with pytest.raises(ValueError, match="NaN"):
        select_grape(table, generator=TableScorer({**SCORES, "long A": (float("nan"), 3)}), prompt_fn=chat_prompt)

    class Truncating(TableScorer):
        def loglikelihood(self, pairs):
            return super().loglikelihood(pairs)[:-1]

    with pytest.raises(ValueError, match="log-likelihoods"):
        select_grape(table, generator=Truncating(SCORES), prompt_fn=chat_prompt)


def test_invalid_arguments(make_samples):
    table = grape_table(make_samples)
    with pytest.raises(ValueError, match="per_problem"):
        select_grape(table, generator=TableScorer(SCORES), prompt_fn=chat_prompt, per_problem=0)
    with pytest.raises(KeyError, match="verdict"):
        select_grape(table.drop_columns(["verdict"]), generator=TableScorer(SCORES), prompt_fn=chat_prompt)
    with pytest.raises(TypeError):
        select_grape(table, generator=object(), prompt_fn=chat_prompt)  # type: ignore[arg-type]


def test_input_is_not_modified(make_samples):
    table = grape_table(make_samples)
    before = table.to_pylist()
    select_grape(table, generator=TableScorer(SCORES), prompt_fn=lambda p: prompt_text(chat_prompt(p)))
    assert table.to_pylist() == before

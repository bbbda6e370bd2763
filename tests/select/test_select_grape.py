"""GRAPE logic: scoring the exported conversation's learned tokens, per-problem counts, budgets.

Scorers here are real `TokenScorer`s over the embedded model's real tokenizer:
a table-driven one (scores looked up by the learned text), one whose scores
depend on the context, and the scripted backend's.
"""

from __future__ import annotations

import functools
import json
from typing import Sequence

import numpy as np
import pyarrow as pa
import pytest

from mathforge.conversation import row_conversation, tokenize_conversation
from mathforge.generation.embedded import load_tokenizer
from mathforge.generation.base import LogLikelihood, MaskedTokens, check_masked_tokens
from mathforge.generation.embedded import DEFAULT_MODEL
from mathforge.generation.scripted import ScriptedGenerator
from mathforge.records import QUERY_INFO_SCHEMA
from mathforge.select import Budget, dart_allocation, select_grape

CONVERSATION = functools.partial(
    row_conversation, prompt_by_strategy={"self-correction": "solve_cot", "tool-integrated": "solve_with_code"},
    default_prompt="solve_cot", system_prompt=None,
)


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(DEFAULT_MODEL)


class TableScorer:
    """A TokenScorer whose (sum, n_tokens) is looked up by the text of the learned (masked) tokens."""

    model_id = "table-scorer"

    def __init__(self, tokenizer, scores: dict[str, tuple[float, int]]) -> None:
        self.tokenizer = tokenizer
        self.scores = scores
        self.learned: list[str] = []
        self.contexts: list[str] = []

    def score_tokens(self, sequences: Sequence[MaskedTokens]) -> list[LogLikelihood]:
        check_masked_tokens(sequences)
        results = []
        for ids, mask in sequences:
            learned = self.tokenizer.decode([i for i, m in zip(ids, mask) if m], skip_special_tokens=True).strip()
            self.learned.append(learned)
            self.contexts.append(self.tokenizer.decode([i for i, m in zip(ids, mask) if not m]))
            results.append(LogLikelihood(*self.scores[learned]))
        return results


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


def test_keeps_highest_loglik_per_token_among_correct(make_samples, tokenizer):
    scorer = TableScorer(tokenizer, SCORES)
    result = select_grape(grape_table(make_samples), scorer=scorer, conversation=CONVERSATION)
    assert result.table.column("sample_id").to_pylist() == ["a2", "b1"]
    assert result.table.column("loglik_per_token").to_pylist() == [-1.0, -1.0]
    assert result.table.column("selection_score").to_pylist() == [-1.0, -1.0]
    assert result.table.column("selected_by").to_pylist() == ["grape", "grape"]
    assert result.counts == {"kept": 2, "grape_not_best": 2, "not_correct": 3}
    reasons = dict(zip(result.rejected.column("row_id").to_pylist(), result.rejected.column("reason").to_pylist()))
    assert reasons == {"a1": "grape_not_best", "b2": "grape_not_best", "a3": "not_correct", "c1": "not_correct", "c2": "not_correct"}
    # Only correct responses are scored; the learned tokens are the response, the context its exported user turn.
    assert sorted(scorer.learned) == sorted(SCORES)
    assert all("problem A" in context or "problem B" in context for context in scorer.contexts)


def test_per_problem_fixed_mapping_and_budget(make_samples, tokenizer):
    table = grape_table(make_samples)
    result = select_grape(table, scorer=TableScorer(tokenizer, SCORES), conversation=CONVERSATION, per_problem=2)
    assert result.table.column("sample_id").to_pylist() == ["a1", "a2", "b2", "b1"]
    assert result.counts == {"kept": 4, "not_correct": 3}
    # A per-problem mapping (DART's counts); a problem missing from it keeps 1.
    result = select_grape(table, scorer=TableScorer(tokenizer, SCORES), conversation=CONVERSATION, per_problem={"A": 2})
    assert result.table.column("sample_id").to_pylist() == ["a1", "a2", "b1"]
    # A budget shrinks every problem's count by the same fraction; the best rows stay.
    result = select_grape(
        table, scorer=TableScorer(tokenizer, SCORES), conversation=CONVERSATION, per_problem=2, budget=Budget(rows=2)
    )
    assert result.table.column("sample_id").to_pylist() == ["a2", "b1"]
    assert result.counts == {"kept": 2, "grape_over_budget": 2, "not_correct": 3}


def test_dart_allocation_is_accepted_count_most_over_models():
    info = pa.Table.from_pylist(
        [
            # Model 1 solved p1 4 times against a target of 2: 2 accepted (2 surplus).
            {"problem_id": "p1", "n_trials": 8, "n_correct": 4, "target": 2},
            # Model 2 only reached 1 of its target of 2 on p1.
            {"problem_id": "p1", "n_trials": 16, "n_correct": 1, "target": 2},
            # p2 capped short of a prop2diff target of 6.
            {"problem_id": "p2", "n_trials": 16, "n_correct": 3, "target": 6},
            {"problem_id": "p3", "n_trials": 16, "n_correct": 0, "target": 8},
        ],
        schema=pa.schema([QUERY_INFO_SCHEMA.field(n) for n in ("problem_id", "n_trials", "n_correct", "target")]),
    )
    assert dart_allocation(info) == {"p1": 2, "p2": 3, "p3": 0}


class ContextScorer:
    """Scores learned tokens -0.5 each when the verifier's feedback is in their context, -2.0 otherwise."""

    model_id = "context-scorer"

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.n_tokens: list[int] = []

    def score_tokens(self, sequences: Sequence[MaskedTokens]) -> list[LogLikelihood]:
        check_masked_tokens(sequences)
        results = []
        for ids, mask in sequences:
            context = self.tokenizer.decode([i for i, m in zip(ids, mask) if not m])
            n = int(sum(mask))
            self.n_tokens.append(n)
            results.append(LogLikelihood((-0.5 if "is incorrect" in context else -2.0) * n, n))
        return results


CORRECTION = "Let me fix it: 2 + 2 = 4. \\boxed{4}"
CORRECTION_TRACE = json.dumps(
    [
        {"role": "assistant", "content": "2 + 2 = 5. \\boxed{5}"},
        {"role": "user", "content": "Your final answer, 5, is incorrect. Find the mistake and solve it again."},
        {"role": "assistant", "content": CORRECTION},
    ]
)
TOOL_TRACE = json.dumps(
    [
        {"role": "assistant", "content": "```python\nprint(2 + 2)\n```"},
        {"role": "tool", "content": "4 4 4 4 4 4 4 4 4 4 4 4 4 4 4 4"},
        {"role": "assistant", "content": "The answer is \\boxed{4}."},
    ]
)


def context_rows(make_samples):
    base = {"problem_id": "p", "problem": "What is 2 + 2?", "verdict": "correct"}
    return make_samples(
        [
            {**base, "sample_id": "dart", "strategy": "dart-uniform", "response": "2 + 2 = 4, so \\boxed{4}."},
            {**base, "sample_id": "corr", "strategy": "self-correction", "response": CORRECTION, "trace_json": CORRECTION_TRACE},
            {**base, "sample_id": "tool", "strategy": "tool-integrated", "response": "x", "trace_json": TOOL_TRACE},
        ]
    )


def test_corrections_and_tool_traces_are_scored_in_their_exported_context(make_samples, tokenizer):
    table = context_rows(make_samples)
    scorer = ContextScorer(tokenizer)
    result = select_grape(table, scorer=scorer, conversation=CONVERSATION)
    # Under the DART prompt the correction would score -2.0 per token like the others (the old behaviour
    # scored prompt_fn(problem) + response); in its exported context (after the wrong attempt and the
    # verifier's feedback) it scores -0.5, and that is the row GRAPE keeps.
    assert result.table.column("sample_id").to_pylist() == ["corr"]
    assert result.table.column("loglik_per_token").to_pylist() == [-0.5]
    as_dart_row = make_samples([{**table.to_pylist()[1], "strategy": "dart-uniform", "trace_json": None}])
    assert select_grape(as_dart_row, scorer=ContextScorer(tokenizer), conversation=CONVERSATION).table.column(
        "loglik_per_token"
    ).to_pylist() == [-2.0]
    # The tool trace's learned tokens exclude the sandbox output: fewer than its whole completion.
    tool = tokenize_conversation(tokenizer, CONVERSATION(table.to_pylist()[2]))
    learned_tool = tokenizer.decode([i for i, m in zip(tool.input_ids, tool.completion_mask) if m])
    assert "4 4 4" not in learned_tool and "print(2 + 2)" in learned_tool
    assert scorer.n_tokens[2] == sum(tool.completion_mask)
    dart_alone = ContextScorer(tokenizer)
    select_grape(table.slice(0, 1), scorer=dart_alone, conversation=CONVERSATION)
    assert dart_alone.n_tokens == [scorer.n_tokens[0]]


def test_choice_is_the_argmax_of_scripted_scores_on_the_exported_tokens(make_samples, tokenizer):
    rows = [
        {"sample_id": f"p{i}-{j}", "problem_id": f"p{i}", "problem": f"What is {i} + {i}?", "verdict": "correct",
         "response": f"Attempt {j}: {i} + {i} = {2 * i}. \\boxed{{{2 * i}}}" + " Checked." * j}
        for i in range(5)
        for j in range(4)
    ]
    scorer = ScriptedGenerator(seed=11)
    result = select_grape(make_samples(rows), scorer=scorer, conversation=CONVERSATION)
    kept = result.table.column("sample_id").to_pylist()
    for i in range(5):
        candidates = [row for row in rows if row["problem_id"] == f"p{i}"]
        independent = []
        for row in candidates:
            tokens = tokenize_conversation(tokenizer, CONVERSATION({**row, "strategy": "generate", "trace_json": None}))
            independent.append(scorer.score_tokens([(tokens.input_ids, tokens.completion_mask)])[0].per_token)
        assert [sid for sid in kept if sid.startswith(f"p{i}-")] == [candidates[int(np.argmax(independent))]["sample_id"]]
    # Another scripted model scores differently: swapping the target changes at least one choice.
    other = select_grape(make_samples(rows), scorer=ScriptedGenerator(seed=11, model_id="scripted:other"), conversation=CONVERSATION)
    assert other.table.column("sample_id").to_pylist() != kept


def test_nan_scores_and_short_answers_are_errors(make_samples, tokenizer):
    table = grape_table(make_samples)
    with pytest.raises(ValueError, match="NaN"):
        select_grape(table, scorer=TableScorer(tokenizer, {**SCORES, "long A": (float("nan"), 3)}), conversation=CONVERSATION)

    class Truncating(TableScorer):
        def score_tokens(self, sequences):
            return super().score_tokens(sequences)[:-1]

    with pytest.raises(ValueError, match="log-likelihoods"):
        select_grape(table, scorer=Truncating(tokenizer, SCORES), conversation=CONVERSATION)


def test_invalid_arguments(make_samples, tokenizer):
    table = grape_table(make_samples)
    with pytest.raises(ValueError, match="per_problem"):
        select_grape(table, scorer=TableScorer(tokenizer, SCORES), conversation=CONVERSATION, per_problem=0)
    with pytest.raises(KeyError, match="verdict"):
        select_grape(table.drop_columns(["verdict"]), scorer=TableScorer(tokenizer, SCORES), conversation=CONVERSATION)
    with pytest.raises(TypeError):
        select_grape(table, scorer=object(), conversation=CONVERSATION)  # type: ignore[arg-type]


def test_input_is_not_modified(make_samples, tokenizer):
    table = grape_table(make_samples)
    before = table.to_pylist()
    select_grape(table, scorer=TableScorer(tokenizer, SCORES), conversation=CONVERSATION)
    assert table.to_pylist() == before

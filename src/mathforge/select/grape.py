"""GRAPE: "The Best Instruction-Tuning Data are Those That Fit" (Zhang et al., 2024).

Among several responses to the same instruction, GRAPE keeps the one the
target model already finds most likely: the highest length-normalized
log-likelihood (mean log-probability per learned token) under the model that
will be fine-tuned, so SFT moves it least from its own distribution. The paper
gathers responses from several strong models and checks them first; here the
candidates are a problem's verified-correct responses, which may come from
several sampling models (`generation.additional`) and from several row kinds
(DART solutions, corrections, tool-integrated traces).

What is scored is exactly what is trained: each row becomes its exported
conversation (`mathforge.conversation.row_conversation`, the export's own
function), is tokenized with the target's tokenizer and chat template
(`tokenize_conversation`), and only the tokens of its `completion_mask` count.
So a correction is scored after its wrong attempt and the verifier's feedback,
a tool trace without the sandbox's outputs, and a DART row under the prompt it
is exported with.

Extensions: `per_problem` > 1 keeps the top few; a per-problem mapping keeps a
different number per problem (DART's accepted counts, so a hard problem that
earned 8 correct responses keeps its 8 best, not 1); an optional budget
shrinks those counts in proportion.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np
import pyarrow as pa

from mathforge.conversation import Conversation, tokenize_conversation
from mathforge.generation.base import TokenScorer
from mathforge.select.base import Budget, SelectResult, finish_selection, require_columns, take_balanced

ConversationFn = Callable[[Mapping[str, Any]], Conversation]


def select_grape(
    table: pa.Table,
    *,
    scorer: TokenScorer,
    conversation: ConversationFn,
    per_problem: int | Mapping[str, int] = 1,
    budget: Budget | None = None,
) -> SelectResult:
    """Keep, per problem, the correct responses with the highest log-likelihood per learned token.

    Reads `sample_id`, `problem_id`, `verdict` and whatever `conversation`
    reads (for the export's: `problem`, `response`, `strategy`, `trace_json`);
    writes `loglik_per_token` and `selection_score` (both the mean
    log-probability per learned token, nats) on kept rows and appends 'grape'
    to `selected_by`. `cluster_id` is left as it was. Dropped rows get
    'not_correct' (verdict not 'correct': only verified responses are
    candidates), 'grape_not_best' (better-fitting correct responses filled the
    problem's count) or 'grape_over_budget' (cut by the budget). Ties go to the
    smaller sample_id, so the choice is deterministic.

    Args:
        table: samples (not modified).
        scorer: the target model (its tokenizer renders, its log-probabilities score).
        conversation: row -> the conversation it is exported as.
        per_problem: responses kept per problem (>= 1), or problem_id -> count;
            a problem missing from the mapping, or mapped to 0, keeps 1 (it has a
            correct candidate, e.g. a correction of a problem DART never solved).
        budget: optional cap on the total (rows or tokens); every problem's
            count shrinks by the same fraction (`take_balanced`, proportional).
    """
    require_columns(table, ["sample_id", "problem_id", "verdict"], why="select_grape")
    if isinstance(per_problem, int) and per_problem < 1:
        raise ValueError(f"per_problem must be >= 1, got {per_problem}")
    if not isinstance(scorer, TokenScorer):
        raise TypeError("scorer must be a TokenScorer (tokenizer and score_tokens)")

    verdicts = table.column("verdict").to_pylist()
    candidates = [i for i, verdict in enumerate(verdicts) if verdict == "correct"]
    rows = table.take(pa.array(candidates, type=pa.int64())).to_pylist()
    tokenized = [tokenize_conversation(scorer.tokenizer, conversation(row)) for row in rows]
    scored = scorer.score_tokens([(t.input_ids, t.completion_mask) for t in tokenized])
    if len(scored) != len(candidates):
        raise ValueError(f"scorer returned {len(scored)} log-likelihoods for {len(candidates)} sequences")

    sample_ids = table.column("sample_id").to_pylist()
    scores = np.full(table.num_rows, np.nan)
    for index, result in zip(candidates, scored):
        if np.isnan(result.per_token):
            raise ValueError(f"scorer returned a NaN log-likelihood for sample {sample_ids[index]}")
        scores[index] = result.per_token

    by_problem: dict[str, list[int]] = {}
    problem_ids = table.column("problem_id").to_pylist()
    for index in candidates:
        by_problem.setdefault(problem_ids[index], []).append(index)
    best = []
    for problem_id, members in sorted(by_problem.items()):
        count = per_problem if isinstance(per_problem, int) else max(1, int(per_problem.get(problem_id, 1)))
        best.append(np.array(sorted(members, key=lambda i: (-scores[i], sample_ids[i]))[:count], dtype=np.int64))
    if budget is None:
        keep = np.sort(np.concatenate(best)) if best else np.zeros(0, dtype=np.int64)
    else:
        keep = take_balanced(best, budget.costs(table), budget.amount, proportional=True)
    reasons = np.where(np.isnan(scores), "not_correct", "grape_not_best").astype(object)
    if budget is not None:
        allotted = np.concatenate(best) if best else np.zeros(0, dtype=np.int64)
        reasons[allotted] = "grape_over_budget"
    n_tokens = [result.n_tokens for result in scored]
    return finish_selection(
        table,
        keep,
        method="grape",
        drop_reasons=reasons,
        columns={"loglik_per_token": scores, "selection_score": scores},
        stats={
            "n_problems": float(len(by_problem)),
            "n_scored": float(len(candidates)),
            "scored_tokens": float(sum(n_tokens)),
        },
    )


def dart_allocation(query_info: pa.Table) -> dict[str, int]:
    """Per problem, how many correct responses DART accepted (surplus excluded): its difficulty-aware count.

    Reads QUERY_INFO_SCHEMA rows (`problem_id`, `n_correct`, `target`); one
    row per problem and sampling model (several DART stages' tables
    concatenated). A run accepted `min(n_correct, target)`; with several models
    a problem keeps the largest of their counts.
    """
    allocation: dict[str, int] = {}
    for row in query_info.select(["problem_id", "n_correct", "target"]).to_pylist():
        accepted = min(row["n_correct"], row["target"])
        allocation[row["problem_id"]] = max(allocation.get(row["problem_id"], 0), accepted)
    return allocation

"""Reference-answer audit after DART: flag problems whose responses agree on another answer.

Seed sets carry wrong reference answers (GSM8K and MATH have known label
errors; NeMo-Skills users found wrong and unverifiable answers in a released
3M-problem set). Rejection sampling against a wrong reference spends its whole
trial budget and then exports the problem as "hard". DART-Math itself trusts
the reference; this audit is the self-consistency idea (Wang et al., 2023:
agreement among sampled answers as a correctness signal) turned on the
reference: when enough judged responses exist (`min_responses`) and more than
`min_majority_share` of them agree on one value that the verifier says differs
from the reference, the reference is suspect.

Answers are grouped by value, not by spelling: responses judged correct form
the reference's group; the other extracted answers are grouped by the
verifier itself (`compare_many` on pairs of distinct spellings), so `0.5` and
`\\frac{1}{2}` count together. Unjudgeable responses (no answer, truncated) do
not count. Policy 'report' only flags; 'quarantine' also keeps the problem's
rows out of the export (`quarantined_problem_ids`).
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Sequence

import pyarrow as pa
from pydantic import Field

from mathforge.section import Section
from mathforge.records import Problem, ReferenceAudit, Verdict

CompareMany = Callable[[list[tuple[str, str]]], list[Verdict]]


class ReferenceAuditConfig(Section):
    """Thresholds and policy of the reference audit run after DART sampling."""

    enabled: bool = Field(default=True, description="Audit reference answers after sampling.")
    min_responses: int = Field(
        default=8, ge=1, description="Least judged responses (correct or incorrect) before a problem can be flagged."
    )
    min_majority_share: float = Field(
        default=0.5,
        ge=0.5,
        lt=1.0,
        description="Flag a problem when MORE than this share of its judged responses agree on one value the "
        "verifier says differs from the reference (0.5: a strict majority, never a mere plurality; raise it "
        "for a stronger majority). Measured on planted wrong references in benchmarks/reference_audit.py.",
    )
    policy: Literal["report", "quarantine"] = Field(
        default="report",
        description="'report': flag suspects in the audit table, manifest and card; 'quarantine': also keep "
        "every row of a suspect problem out of the export (counted as 'quarantined_suspect_reference').",
    )


@dataclass(frozen=True)
class AuditResult:
    """One ReferenceAudit row per problem, and counts by status (plus 'quarantined')."""

    rows: list[ReferenceAudit]
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def suspects(self) -> list[ReferenceAudit]:
        return [row for row in self.rows if row.status == "suspect_reference"]


def _spelling(answer: str) -> str:
    return re.sub(r"\s+", "", answer)


def audit_references(
    problems: Sequence[Problem], samples: pa.Table, config: ReferenceAuditConfig, *, compare_many: CompareMany
) -> AuditResult:
    """Audit each problem's reference against its judged responses; pure but for `compare_many`.

    Reads `problem_id`, `verdict` and `extracted_answer` of `samples` (every
    DART trial, correct and not). `compare_many` compares (answer, answer)
    pairs with the verifier (e.g. `VerifierPool.compare_many`); it is asked
    only about problems that could be flagged (enough judged responses, and
    enough incorrect ones to form the majority).
    """
    correct: dict[str, int] = defaultdict(int)
    wrong: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    written: dict[tuple[str, str], str] = {}
    columns = samples.select(["problem_id", "verdict", "extracted_answer"]).to_pydict()
    for problem_id, verdict, answer in zip(columns["problem_id"], columns["verdict"], columns["extracted_answer"]):
        if verdict == "correct":
            correct[problem_id] += 1
        elif verdict == "incorrect" and answer and answer.strip():
            key = _spelling(answer)
            wrong[problem_id][key] += 1
            written.setdefault((problem_id, key), answer.strip())

    def n_judged(problem_id: str) -> int:
        return correct[problem_id] + sum(wrong[problem_id].values())

    def could_flag(problem_id: str) -> bool:
        total = n_judged(problem_id)
        return total >= config.min_responses and sum(wrong[problem_id].values()) > config.min_majority_share * total

    pairs: list[tuple[str, str, str]] = []
    for problem in problems:
        if could_flag(problem.problem_id):
            keys = sorted(wrong[problem.problem_id], key=lambda k: (-wrong[problem.problem_id][k], k))
            pairs += [(problem.problem_id, a, b) for i, a in enumerate(keys) for b in keys[i + 1 :]]
    verdicts = compare_many([(written[(pid, a)], written[(pid, b)]) for pid, a, b in pairs]) if pairs else []
    parent: dict[tuple[str, str], tuple[str, str]] = {}

    def root(node: tuple[str, str]) -> tuple[str, str]:
        while parent.get(node, node) != node:
            node = parent[node]
        return node

    for (problem_id, a, b), verdict in zip(pairs, verdicts, strict=True):
        if verdict.is_correct:
            parent[root((problem_id, b))] = root((problem_id, a))

    rows = []
    counts: dict[str, int] = defaultdict(int)
    for problem in problems:
        pid = problem.problem_id
        groups: dict[str, int] = defaultdict(int)
        for key, count in wrong[pid].items():
            groups[root((pid, key))[1]] += count
        ranked = sorted(groups.items(), key=lambda item: (-item[1], item[0]))
        total = n_judged(pid)
        majority_key, majority_count = ranked[0] if ranked else (None, 0)
        share = majority_count / total if total else 0.0
        if total < config.min_responses:
            status = "too_few_responses"
        elif share > config.min_majority_share:
            status = "suspect_reference"
        else:
            status = "consistent"
        quarantined = status == "suspect_reference" and config.policy == "quarantine"
        answer_counts = {problem.answer: correct[pid]} | {written[(pid, key)]: count for key, count in ranked}
        rows.append(
            ReferenceAudit(
                problem_id=pid,
                reference=problem.answer,
                n_judged=total,
                n_reference=correct[pid],
                majority_answer=written[(pid, majority_key)] if majority_key is not None else None,
                majority_count=majority_count,
                majority_share=share,
                answer_counts_json=json.dumps(answer_counts, ensure_ascii=False),
                status=status,
                is_quarantined=quarantined,
            )
        )
        counts[status] += 1
        counts["quarantined"] += quarantined
    return AuditResult(rows=rows, counts=dict(counts))


def suspect_entries(rows: Sequence[ReferenceAudit]) -> list[dict[str, Any]]:
    """The suspects as small dicts for a stage manifest and the dataset card."""
    return [
        {
            "problem_id": row.problem_id,
            "reference": row.reference,
            "majority_answer": row.majority_answer,
            "majority_count": row.majority_count,
            "n_judged": row.n_judged,
            "n_reference": row.n_reference,
            "is_quarantined": row.is_quarantined,
        }
        for row in rows
        if row.status == "suspect_reference"
    ]


def quarantined_problem_ids(entries: Sequence[dict[str, Any]]) -> set[str]:
    """Problem ids whose rows must not be exported, from `suspect_entries`' output."""
    return {entry["problem_id"] for entry in entries if entry["is_quarantined"]}


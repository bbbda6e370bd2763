"""The one schema of mathforge: every table column is declared here, once.

Each table has a pydantic model (validation of single rows, documentation of
fields) and the matching pyarrow schema (what Parquet shards hold). A test
(`tests/test_records.py`) keeps the two in step. Stages declare which columns
they read and add in their docstrings; no other module invents a column.

Structured values that vary by row (sampling parameters, template variables,
slot domains) are stored as JSON text in typed `*_json` columns rather than a
free-form dict column: the column set stays fixed and Parquet-friendly.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

VerdictLabel = Literal["correct", "incorrect", "unjudgeable"]
QueryStatus = Literal["solved", "capped", "unsolved", "pending"]


class Record(BaseModel):
    """Base for table rows: unknown fields are errors, rows are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Problem(Record):
    """A seed or synthesized problem with its reference answer."""

    problem_id: str = Field(description="Stable id: source-specific, or a hash of the problem text.")
    problem: str = Field(description="Problem statement shown to the model.")
    answer: str = Field(description="Reference final answer (LaTeX or plain text).")
    source: str = Field(description="Where it came from: seed file name, 'template', ...")
    solution: str | None = Field(default=None, description="Reference worked solution, if any.")
    program: str | None = Field(
        default=None, description="Python source of a `solve(**slots)` program that computes the answer."
    )
    template_id: str | None = Field(default=None, description="Template that produced it (synthesis).")
    variables_json: str | None = Field(
        default=None, description="JSON object of slot name -> value used to instantiate the template."
    )
    seed_problem_id: str | None = Field(
        default=None, description="problem_id of the seed this problem was derived from."
    )


class Verdict(Record):
    """Outcome of comparing a response's final answer with a reference.

    `is_correct` is None when the pair could not be judged (no answer found,
    unparsable, timeout); `reason` is then a snake_case explanation.
    """

    is_correct: bool | None
    reason: str = Field(description="snake_case reason, e.g. 'string_match', 'no_answer_found'.")
    extracted: str | None = Field(default=None, description="Final answer extracted from the response.")
    method: str = Field(default="", description="Which comparison decided: string, numeric, symbolic, ...")

    @property
    def label(self) -> VerdictLabel:
        """The verdict as one of correct / incorrect / unjudgeable."""
        if self.is_correct is None:
            return "unjudgeable"
        return "correct" if self.is_correct else "incorrect"


class Sample(Record):
    """One generated response to a problem, with its verdict and lineage."""

    sample_id: str = Field(description="Stable id: hash of (problem_id, model, prompt, sampling, index).")
    problem_id: str
    problem: str
    answer: str = Field(description="Reference answer of the problem.")
    source: str = Field(description="Source of the problem (copied from Problem.source).")
    response: str = Field(description="Full model response (for traces: the whole assistant text).")
    finish_reason: str = Field(description="'stop' or 'length' (truncated), as the backend reported.")
    n_completion_tokens: int = Field(description="Tokens in the response.")
    extracted_answer: str | None = None
    verdict: VerdictLabel | None = Field(default=None, description="None until verified.")
    verdict_reason: str | None = None
    verifier: str | None = Field(default=None, description="Verifier name and policy that judged it.")
    model: str = Field(description="Model id that generated the response.")
    sampling_json: str = Field(description="JSON of the sampling parameters.")
    prompt_hash: str = Field(description="sha256 prefix of the rendered prompt.")
    round: int = Field(default=0, description="Sampling round that produced it (DART), 0 otherwise.")
    sample_index: int = Field(default=0, description="Index of this response among the problem's trials.")
    strategy: str = Field(default="", description="Producing stage/strategy: 'generate', 'dart-uniform', ...")
    n_trials: int | None = Field(default=None, description="Trials spent on the problem (all rounds).")
    n_correct: int | None = Field(default=None, description="Verified-correct trials of the problem.")
    pass_rate: float | None = Field(default=None, description="n_correct / n_trials.")
    pass_rate_low: float | None = Field(default=None, description="95% Wilson interval, lower end.")
    pass_rate_high: float | None = Field(default=None, description="95% Wilson interval, upper end.")
    is_surplus: bool = Field(default=False, description="Correct, but beyond the problem's target (DART).")
    n_rounds: int | None = Field(default=None, description="Tool rounds (code cells run) in a trace.")
    n_corrections: int | None = Field(default=None, description="Corrections made in a trace.")
    trace_json: str | None = Field(
        default=None, description="JSON list of trace steps (text, code, output) for tool-integrated traces."
    )
    loglik_per_token: float | None = Field(default=None, description="GRAPE score under the target model.")
    cluster_id: int | None = Field(default=None, description="Cluster assigned by a selector.")
    selection_score: float | None = Field(default=None, description="Score of the last selector applied.")
    selected_by: str | None = Field(default=None, description="Selectors applied, in order, '+'-joined.")


def judged_sample(problem: Problem, verdict: Verdict, **fields: Any) -> Sample:
    """A Sample for `problem` carrying `verdict`'s columns; `fields` gives the response and lineage."""
    return Sample(
        problem_id=problem.problem_id,
        problem=problem.problem,
        answer=problem.answer,
        source=problem.source,
        extracted_answer=verdict.extracted,
        verdict=verdict.label,
        verdict_reason=verdict.reason,
        **fields,
    )


class Message(Record):
    """One chat message, as TRL's SFTTrainer reads them."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str


class SFTRow(Sample):
    """An exported training row: a Sample plus its training contract (`mathforge.conversation`).

    `prompt` is context (no loss), `completion` is learned; `messages` is the
    whole conversation (prompt then completion), for viewers and chat tools.
    """

    row_kind: Literal["cot", "template-solution", "correction", "tool", "cosc"] = Field(
        description="What the row teaches; decides which messages are context (see mathforge.conversation)."
    )
    messages: list[Message] = Field(description="The whole conversation: prompt then completion.")
    prompt: list[Message] = Field(description="Context messages (system, user, a wrong attempt, feedback): no loss.")
    completion: list[Message] = Field(
        description="Learned messages: assistant turns, with sandbox outputs as tool turns (masked when pre-tokenized)."
    )


class TokenizedSFTRow(SFTRow):
    """An exported row pre-tokenized for one tokenizer (`output.tokenizer`), as TRL's SFTTrainer takes it."""

    input_ids: list[int] = Field(description="Token ids of `messages` rendered with the tokenizer's chat template.")
    completion_mask: list[int] = Field(
        description="1 on learned tokens; 0 on the prompt and on tool turns (with the assistant header after them)."
    )


class QueryInfo(Record):
    """Per-problem sampling statistics (DART query-info table)."""

    problem_id: str
    n_trials: int
    n_correct: int
    pass_rate: float
    pass_rate_low: float
    pass_rate_high: float
    target: int = Field(description="Correct responses wanted for this problem.")
    n_rounds: int = Field(description="Rounds in which the problem was sampled.")
    status: QueryStatus


class Template(Record):
    """A number-decoupled problem template (authored or LLM-decoupled)."""

    template_id: str
    seed_problem_id: str | None
    template: str = Field(description="Problem text with {slot} placeholders.")
    program: str = Field(description="Python source defining solve(**slots).")
    slots_json: str = Field(description="JSON object slot -> {type, min, max, original}.")
    constraints_json: str = Field(description="JSON list of Python boolean expressions over slots.")
    solution_template: str | None = Field(
        default=None, description="Chain-of-thought solution text with {slot}/{expression} placeholders."
    )
    answer_type: str = Field(description="'integer', 'decimal' or 'fraction': the kind of answer kept.")
    origin: Literal["authored", "decoupled"]


class Quarantined(Record):
    """An input row that could not be used, with the reason."""

    source_file: str
    row_number: int = Field(description="1-based row (line) number in the source file.")
    field: str | None = Field(default=None, description="Offending field, when one is to blame.")
    reason: str = Field(description="snake_case reason, e.g. 'invalid_json', 'missing_field'.")
    raw: str = Field(description="The row as read, truncated to 2,000 characters.")


class Rejected(Record):
    """A row dropped by a filter or stage: the original row's id, problem, and the reason."""

    stage: str
    row_id: str = Field(description="sample_id or problem_id of the dropped row.")
    problem_id: str | None
    reason: str
    detail: str | None = Field(default=None, description="Free text: what matched, which benchmark item, ...")


class BenchmarkItem(Record):
    """One benchmark test item with its reference answer (`mathforge.benchmark_sets`)."""

    benchmark: str = Field(description="Benchmark name: registry name, file stem or directory name.")
    item_id: str = Field(description="The item's id in the benchmark, else '<benchmark>-<row>' (0-based).")
    problem: str
    answer: str = Field(description="Reference final answer (GSM8K '####' part, MATH boxed part, or the answer field).")
    subject: str | None = Field(default=None, description="Subject (MATH: 'Algebra', ...), when the benchmark has one.")
    level: str | None = Field(default=None, description="Difficulty level ('1'..'5' in MATH), when the benchmark has one.")


class EvalResult(Record):
    """How a model did on one benchmark item: greedy answer, sampled answers, majority vote."""

    benchmark: str
    item_id: str
    problem: str
    answer: str = Field(description="Reference answer.")
    subject: str | None = None
    level: str | None = None
    model: str = Field(description="Model id that answered.")
    prompt_hash: str = Field(description="sha256 prefix of the prompt sent (same rendering as training).")
    greedy_response: str | None = Field(default=None, description="Greedy (temperature 0) response; None when not run.")
    greedy_extracted: str | None = Field(default=None, description="Final answer extracted from the greedy response.")
    greedy_verdict: VerdictLabel | None = Field(default=None, description="Verdict of the greedy response.")
    greedy_reason: str | None = Field(default=None, description="Verifier reason of the greedy verdict.")
    greedy_finish_reason: str | None = Field(default=None, description="'stop' or 'length' (truncated).")
    n_samples: int = Field(description="Sampled responses (0 when only greedy decoding ran).")
    n_correct: int = Field(description="Sampled responses judged correct.")
    majority_answer: str | None = Field(default=None, description="Most frequent answer among all samples.")
    majority_credit: float | None = Field(
        default=None, description="maj@n_samples credit: 1 correct majority, 1/t when the correct answer ties t ways, else 0."
    )
    samples_json: str | None = Field(
        default=None, description="JSON list of the sampled responses: text, extracted, verdict, reason, finish_reason."
    )


MESSAGE_TYPE = pa.struct([pa.field("role", pa.string(), nullable=False), pa.field("content", pa.string(), nullable=False)])

PROBLEM_SCHEMA = pa.schema(
    [
        pa.field("problem_id", pa.string(), nullable=False),
        pa.field("problem", pa.string(), nullable=False),
        pa.field("answer", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("solution", pa.string()),
        pa.field("program", pa.string()),
        pa.field("template_id", pa.string()),
        pa.field("variables_json", pa.string()),
        pa.field("seed_problem_id", pa.string()),
    ]
)

SAMPLE_SCHEMA = pa.schema(
    [
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field("problem_id", pa.string(), nullable=False),
        pa.field("problem", pa.string(), nullable=False),
        pa.field("answer", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("response", pa.string(), nullable=False),
        pa.field("finish_reason", pa.string(), nullable=False),
        pa.field("n_completion_tokens", pa.int64(), nullable=False),
        pa.field("extracted_answer", pa.string()),
        pa.field("verdict", pa.string()),
        pa.field("verdict_reason", pa.string()),
        pa.field("verifier", pa.string()),
        pa.field("model", pa.string(), nullable=False),
        pa.field("sampling_json", pa.string(), nullable=False),
        pa.field("prompt_hash", pa.string(), nullable=False),
        pa.field("round", pa.int64(), nullable=False),
        pa.field("sample_index", pa.int64(), nullable=False),
        pa.field("strategy", pa.string(), nullable=False),
        pa.field("n_trials", pa.int64()),
        pa.field("n_correct", pa.int64()),
        pa.field("pass_rate", pa.float64()),
        pa.field("pass_rate_low", pa.float64()),
        pa.field("pass_rate_high", pa.float64()),
        pa.field("is_surplus", pa.bool_(), nullable=False),
        pa.field("n_rounds", pa.int64()),
        pa.field("n_corrections", pa.int64()),
        pa.field("trace_json", pa.string()),
        pa.field("loglik_per_token", pa.float64()),
        pa.field("cluster_id", pa.int64()),
        pa.field("selection_score", pa.float64()),
        pa.field("selected_by", pa.string()),
    ]
)

SFT_SCHEMA = pa.schema(
    [
        *SAMPLE_SCHEMA,
        pa.field("row_kind", pa.string(), nullable=False),
        pa.field("messages", pa.list_(MESSAGE_TYPE), nullable=False),
        pa.field("prompt", pa.list_(MESSAGE_TYPE), nullable=False),
        pa.field("completion", pa.list_(MESSAGE_TYPE), nullable=False),
    ]
)

# A separate schema, not nullable columns of SFT_SCHEMA: TRL treats any dataset with an
# `input_ids` column as pre-tokenized, so an export without a tokenizer must not have one.
TOKENIZED_SFT_SCHEMA = pa.schema(
    [
        *SFT_SCHEMA,
        pa.field("input_ids", pa.list_(pa.int64()), nullable=False),
        pa.field("completion_mask", pa.list_(pa.int64()), nullable=False),
    ]
)

QUERY_INFO_SCHEMA = pa.schema(
    [
        pa.field("problem_id", pa.string(), nullable=False),
        pa.field("n_trials", pa.int64(), nullable=False),
        pa.field("n_correct", pa.int64(), nullable=False),
        pa.field("pass_rate", pa.float64(), nullable=False),
        pa.field("pass_rate_low", pa.float64(), nullable=False),
        pa.field("pass_rate_high", pa.float64(), nullable=False),
        pa.field("target", pa.int64(), nullable=False),
        pa.field("n_rounds", pa.int64(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
    ]
)

TEMPLATE_SCHEMA = pa.schema(
    [
        pa.field("template_id", pa.string(), nullable=False),
        pa.field("seed_problem_id", pa.string()),
        pa.field("template", pa.string(), nullable=False),
        pa.field("program", pa.string(), nullable=False),
        pa.field("slots_json", pa.string(), nullable=False),
        pa.field("constraints_json", pa.string(), nullable=False),
        pa.field("solution_template", pa.string()),
        pa.field("answer_type", pa.string(), nullable=False),
        pa.field("origin", pa.string(), nullable=False),
    ]
)

QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("source_file", pa.string(), nullable=False),
        pa.field("row_number", pa.int64(), nullable=False),
        pa.field("field", pa.string()),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("raw", pa.string(), nullable=False),
    ]
)

REJECTED_SCHEMA = pa.schema(
    [
        pa.field("stage", pa.string(), nullable=False),
        pa.field("row_id", pa.string(), nullable=False),
        pa.field("problem_id", pa.string()),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("detail", pa.string()),
    ]
)

BENCHMARK_ITEM_SCHEMA = pa.schema(
    [
        pa.field("benchmark", pa.string(), nullable=False),
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("problem", pa.string(), nullable=False),
        pa.field("answer", pa.string(), nullable=False),
        pa.field("subject", pa.string()),
        pa.field("level", pa.string()),
    ]
)

EVAL_RESULT_SCHEMA = pa.schema(
    [
        pa.field("benchmark", pa.string(), nullable=False),
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("problem", pa.string(), nullable=False),
        pa.field("answer", pa.string(), nullable=False),
        pa.field("subject", pa.string()),
        pa.field("level", pa.string()),
        pa.field("model", pa.string(), nullable=False),
        pa.field("prompt_hash", pa.string(), nullable=False),
        pa.field("greedy_response", pa.string()),
        pa.field("greedy_extracted", pa.string()),
        pa.field("greedy_verdict", pa.string()),
        pa.field("greedy_reason", pa.string()),
        pa.field("greedy_finish_reason", pa.string()),
        pa.field("n_samples", pa.int64(), nullable=False),
        pa.field("n_correct", pa.int64(), nullable=False),
        pa.field("majority_answer", pa.string()),
        pa.field("majority_credit", pa.float64()),
        pa.field("samples_json", pa.string()),
    ]
)

#: Each pydantic model with its pyarrow schema; tests/test_records.py keeps them in step.
SCHEMAS: dict[type[Record], pa.Schema] = {
    Problem: PROBLEM_SCHEMA,
    Sample: SAMPLE_SCHEMA,
    SFTRow: SFT_SCHEMA,
    TokenizedSFTRow: TOKENIZED_SFT_SCHEMA,
    QueryInfo: QUERY_INFO_SCHEMA,
    Template: TEMPLATE_SCHEMA,
    Quarantined: QUARANTINE_SCHEMA,
    Rejected: REJECTED_SCHEMA,
    BenchmarkItem: BENCHMARK_ITEM_SCHEMA,
    EvalResult: EVAL_RESULT_SCHEMA,
}


def to_table(rows: list[Record] | list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    """Build a pyarrow table with exactly `schema`'s columns from models or dicts.

    Missing optional fields become nulls; a missing required field raises.
    """
    dicts = [r.model_dump() if isinstance(r, BaseModel) else r for r in rows]
    table = pa.Table.from_pylist(dicts, schema=schema)
    for field in schema:
        if not field.nullable and table.column(field.name).null_count:
            raise ValueError(f"required column {field.name!r} has missing values")
    return table


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Return `table` with `schema`'s columns in order, adding missing nullable ones as nulls.

    Raises KeyError naming the column when a non-nullable column is missing,
    and ValueError on columns the schema does not declare (no silent drift).
    """
    extra = set(table.column_names) - set(schema.names)
    if extra:
        raise ValueError(f"columns not declared in the schema: {sorted(extra)}")
    columns = []
    for field in schema:
        if field.name in table.column_names:
            columns.append(table.column(field.name).cast(field.type))
        elif field.nullable:
            columns.append(pa.nulls(table.num_rows, field.type))
        else:
            raise KeyError(f"required column missing: {field.name}")
    return pa.Table.from_arrays(columns, schema=schema)


def stable_id(*parts: object, length: int = 16) -> str:
    """Return a short, stable hex id from the JSON of `parts` (same input, same id).

    >>> stable_id("gsm8k", 3) == stable_id("gsm8k", 3)
    True
    """
    payload = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:length]

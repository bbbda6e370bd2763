"""The settings of stage `template_synthesis`, its step names, and the rejection bookkeeping its steps share.

Every refused seed, reply or instance becomes one Rejected row (`rejected_row`)
and its reason is counted (`count_reasons`); the counts reach the manifest.
"""

from __future__ import annotations

from collections import Counter
from typing import Literal, Sequence

from pydantic import Field, model_validator

from mathforge.generation.base import GenerationParams
from mathforge.records import Rejected
from mathforge.section import Section

DECOUPLE_STAGE = "template_decouple"
INSTANTIATE_STAGE = "template_instantiate"
PARAPHRASE_STAGE = "template_paraphrase"


class CallConfig(Section):
    """Sampling parameters of one kind of LLM call (decoupling or paraphrasing)."""

    n: int = Field(default=1, ge=1, description="Replies per prompt; the first valid one is used.")
    temperature: float = Field(default=0.2, ge=0.0, description="Sampling temperature.")
    top_p: float = Field(default=1.0, gt=0.0, le=1.0, description="Nucleus sampling.")
    max_tokens: int = Field(default=768, ge=1, description="Longest reply, tokens.")
    seed: int = Field(default=0, description="Per-call seed (honoured by backends that can).")

    def generation_params(self) -> GenerationParams:
        """These settings as backend-neutral GenerationParams."""
        return GenerationParams(
            n=self.n, temperature=self.temperature, top_p=self.top_p, max_tokens=self.max_tokens, seed=self.seed
        )


class DecoupleConfig(Section):
    """LLM decoupling of seed problems into templates (InfinityMATH)."""

    enabled: bool = Field(default=True, description="Decouple seed problems (authored templates are used either way).")
    max_seeds: int = Field(
        default=50, ge=0, description="Most seed problems sent to the LLM (first ones in input order)."
    )
    params: CallConfig = Field(default_factory=CallConfig, description="Sampling of the decoupling replies.")
    min_text_similarity: float = Field(
        default=0.9,
        gt=0.0,
        le=1.0,
        description="Least difflib ratio between the seed text and the template rendered with the seed's numbers "
        "(both lowercased, whitespace and thousands separators normalized).",
    )
    n_probe: int = Field(
        default=3, ge=0, description="Sampled slot values run, besides the seed's, in the determinism check."
    )


class ParaphraseConfig(Section):
    """LLM rewording of instances (TeLL), kept only when its numbers and an independent solve agree."""

    enabled: bool = Field(default=False, description="Paraphrase instances.")
    max_problems: int | None = Field(default=None, ge=0, description="Most instances sent to the LLM; None: all.")
    params: CallConfig = Field(
        default_factory=lambda: CallConfig(temperature=0.7, max_tokens=512),
        description="Sampling of the paraphrase replies.",
    )
    solve: CallConfig = Field(
        default_factory=lambda: CallConfig(n=3, temperature=0.7, max_tokens=512),
        description="Sampling of the independent solve: `n` programs per rewording, written from the "
        "reworded text alone (prompt solve_program).",
    )
    min_reproducing: int = Field(
        default=2,
        ge=1,
        description="Least number of independent programs whose executed answer must verify against the "
        "instance's answer for the rewording to be kept.",
    )

    @model_validator(mode="after")
    def _reachable(self) -> ParaphraseConfig:
        if self.min_reproducing > self.solve.n:
            raise ValueError(f"min_reproducing ({self.min_reproducing}) exceeds solve.n ({self.solve.n})")
        return self


class TemplateSynthesisConfig(Section):
    """Template / number-decoupled problem synthesis (stage `template_synthesis`)."""

    enabled: bool = Field(default=True, description="Run the stage.")
    authored_dir: str = Field(
        default="configs/templates", description="Directory of authored template YAML files (TDG style)."
    )
    templates: tuple[str, ...] | None = Field(
        default=None, description="Authored template ids to use; None: every file in authored_dir."
    )
    decouple: DecoupleConfig = Field(default_factory=DecoupleConfig, description="LLM decoupling of seeds.")
    n_instances_per_template: int = Field(default=100, ge=1, description="Instances wanted per template.")
    max_attempts_factor: int = Field(
        default=50,
        ge=1,
        description="Rejection-sampling bound: at most this many slot-value draws per wanted instance.",
    )
    max_decimal_places: int = Field(
        default=2, ge=0, le=10, description="Most decimal places of a 'decimal' answer; longer ones are rejected."
    )
    timeout_s: float = Field(
        default=10.0, gt=0.0, description="Sandbox limit of one batch run (one template, many slot values), seconds."
    )
    paraphrase: ParaphraseConfig = Field(default_factory=ParaphraseConfig, description="Optional paraphrase step.")
    emit_solutions: bool = Field(
        default=False,
        description="Also write SFT rows of the instances (output `solutions`, see synthesis.template_solutions), "
        "exported alongside DART rows, in the forms of `solution_forms`.",
    )
    solution_forms: tuple[Literal["text", "code"], ...] = Field(
        default=("text",),
        min_length=1,
        description="Rows per instance with `emit_solutions`: 'text' (the rendered solution, strategy 'template-solution') "
        "and/or 'code' (the program, its sandbox output as a tool turn and the answer, strategy 'template-code').",
    )
    seed: int = Field(
        default=0, description="Seed of slot-value sampling (per template: hash of seed and template id)."
    )


def rejected_row(stage: str, row_id: str, problem_id: str | None, reason: str, detail: str | None) -> Rejected:
    return Rejected(stage=stage, row_id=row_id, problem_id=problem_id, reason=reason, detail=detail)


def count_reasons(rows: Sequence[Rejected], extra: Counter[str] | None = None) -> dict[str, int]:
    counts = Counter(row.reason for row in rows)
    counts.update(extra or {})
    return dict(sorted(counts.items()))

"""The selection stage: choose a small, strong training set from a large pool.

`select(table, config)` applies the configured steps in order, each to the
previous step's output: e.g. GRAPE (best-fitting correct response per problem)
then k-means across problems. Each step is one algorithm module:

- `kmeans.select_kmeans`: Diversify and Conquer (k-means diversity, kMQ).
- `s2l.select_s2l`: SmallToLarge (clusters of proxy-model loss trajectories).
- `grape.select_grape`: GRAPE (highest log-likelihood per learned token under
  the target model, each row scored in the context it is exported with).

Columns written: `cluster_id`, `selection_score`, `selected_by` ('+'-joined
methods, e.g. 'grape+kmeans') and, for GRAPE, `loglik_per_token`. The result
also tells how the selection moved the difficulty distribution (problems and
rows per DART pass-rate bucket, before and after), so a flattened allocation
is visible in the dataset card.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Union

import pyarrow as pa
from pydantic import Field, model_validator

from mathforge.section import Section
from mathforge.generation import ModelConfig
from mathforge.generation.base import TokenScorer
from mathforge.select.base import Budget, SelectResult, difficulty_shift, pooled_pass_rates, require_columns
from mathforge.select.embeddings import DEFAULT_EMBEDDING_MODEL, EmbeddingText, embed_texts, embedding_texts
from mathforge.select.grape import ConversationFn, dart_allocation, select_grape
from mathforge.select.kmeans import Split, WithinCluster, select_kmeans, validate_quality_column
from mathforge.select.s2l import ProxyTraining, compute_trajectories, read_trajectories, select_s2l

__all__ = [
    "Budget",
    "ConversationFn",
    "GrapeStep",
    "KMeansStep",
    "ProxyTraining",
    "S2LStep",
    "SelectConfig",
    "SelectResult",
    "dart_allocation",
    "select",
    "select_grape",
    "select_kmeans",
    "select_s2l",
]


class KMeansStep(Section):
    """k-means diversity selection over sentence embeddings (Diversify and Conquer)."""

    method: Literal["kmeans"] = "kmeans"
    budget: Budget = Field(description="Rows or tokens to keep.")
    n_clusters: int | None = Field(default=None, ge=1, description="k; None: ceil(sqrt(rows)), at most 1,000.")
    split: Split = Field(default="equal", description="Budget per cluster: 'equal' or 'proportional' to its size.")
    within: WithinCluster = Field(
        default="nearest", description="Inside a cluster: 'nearest' to centroid, 'random', or 'quality' (kMQ)."
    )
    quality_column: str = Field(
        default="loglik_per_token", description="Numeric column kMQ samples by (within='quality')."
    )
    temperature: float = Field(default=1.0, gt=0, description="kMQ softmax temperature.")
    text: EmbeddingText = Field(
        default="problem", description="What is embedded: 'problem', 'response' or 'problem_response'."
    )


class S2LStep(Section):
    """SmallToLarge: k-means on proxy-model loss trajectories, balanced sampling."""

    method: Literal["s2l"] = "s2l"
    budget: Budget = Field(description="Rows or tokens to keep.")
    n_clusters: int | None = Field(default=None, ge=1, description="k; None: ceil(sqrt(rows)), at most 1,000.")
    trajectories: Path | None = Field(
        default=None, description="Parquet of precomputed trajectories (see s2l.py); None: train the proxy here."
    )
    proxy: ProxyTraining = Field(default_factory=ProxyTraining, description="Proxy training when computed here.")


class GrapeStep(Section):
    """GRAPE: per problem, the correct response(s) the target model finds most likely."""

    method: Literal["grape"] = "grape"
    target_model: ModelConfig | None = Field(
        default=None,
        description="The model to be fine-tuned, which scores the candidates (shaped like `generation`): "
        "backend vllm with the embedded default, a local directory or a hub id; openai with a vLLM server that "
        "returns prompt log-probabilities (its tokenizer is loaded from `model`); or scripted. It is loaded after "
        "generation has released its engine. None: the generation model, a fallback the card names as such "
        "(GRAPE proper scores with the target).",
    )
    per_problem: Annotated[int, Field(ge=1)] | Literal["dart"] = Field(
        default="dart",
        description="Responses kept per problem: 'dart' keeps as many as DART accepted for the problem (the most "
        "over its sampling models, at least 1), the best-fitting ones, so DART's difficulty-aware allocation "
        "survives; an integer keeps that many everywhere (1 flattens the allocation).",
    )
    budget: Budget | None = Field(
        default=None,
        description="Optional cap on the rows or tokens kept; every problem's count then shrinks by the same fraction.",
    )


SelectStep = Annotated[Union[KMeansStep, S2LStep, GrapeStep], Field(discriminator="method")]


class SelectConfig(Section):
    """The `selection` section: steps applied in order, and the embedding model they share."""

    steps: list[SelectStep] = Field(min_length=1, description="Selection steps, each applied to the previous output.")
    embedding_model: str = Field(
        default=DEFAULT_EMBEDDING_MODEL,
        description="Sentence-transformers model for k-means: the packaged default or a local model directory.",
    )
    embedding_cache_dir: Path | None = Field(
        default=None, description="Embedding cache directory; None: <mathforge cache>/embeddings."
    )
    embedding_batch_size: int = Field(default=64, ge=1, description="Texts per embedding forward pass.")
    seed: int = Field(default=0, description="Seed of every random choice (k-means init, draws).")

    @model_validator(mode="after")
    def _one_target(self) -> "SelectConfig":
        targets = {step.target_model.model_key() if step.target_model else None for step in self.grape_steps()}
        if len(targets) > 1:
            raise ValueError("every GRAPE step must name the same target_model (one model is fine-tuned)")
        return self

    def grape_steps(self) -> list[GrapeStep]:
        """The GRAPE steps, in order."""
        return [step for step in self.steps if isinstance(step, GrapeStep)]

    def target_model(self) -> ModelConfig | None:
        """The GRAPE target model configured (None: no GRAPE step, or the generation-model fallback)."""
        steps = self.grape_steps()
        return steps[0].target_model if steps else None


def _run_step(
    table: pa.Table,
    step: KMeansStep | S2LStep | GrapeStep,
    config: SelectConfig,
    scorer: TokenScorer | None,
    conversation: ConversationFn | None,
    allocation: dict[str, int] | None,
) -> SelectResult:
    if isinstance(step, GrapeStep):
        per_problem = allocation if step.per_problem == "dart" else step.per_problem
        return select_grape(table, scorer=scorer, conversation=conversation, per_problem=per_problem, budget=step.budget)  # type: ignore[arg-type]
    if isinstance(step, KMeansStep):
        # Checked before embedding, which can take hours on a large pool.
        if step.within == "quality":
            validate_quality_column(table, step.quality_column)
        embeddings = embed_texts(
            embedding_texts(table, step.text),
            model=config.embedding_model,
            cache_dir=config.embedding_cache_dir,
            batch_size=config.embedding_batch_size,
        )
        return select_kmeans(
            table,
            budget=step.budget,
            embeddings=embeddings,
            seed=config.seed,
            n_clusters=step.n_clusters,
            split=step.split,
            within=step.within,
            quality_column=step.quality_column,
            temperature=step.temperature,
        )
    if step.trajectories is not None:
        trajectories = read_trajectories(step.trajectories, table.column("sample_id").to_pylist())
    else:
        require_columns(table, ["problem", "response"], why="S2L proxy training")
        trajectories = compute_trajectories(
            table.column("problem").to_pylist(), table.column("response").to_pylist(), training=step.proxy, seed=config.seed
        )
    return select_s2l(table, budget=step.budget, trajectories=trajectories, seed=config.seed, n_clusters=step.n_clusters)


def select(
    table: pa.Table,
    config: SelectConfig,
    *,
    scorer: TokenScorer | None = None,
    conversation: ConversationFn | None = None,
    query_info: pa.Table | None = None,
) -> SelectResult:
    """Apply the configured selection steps in order; return the kept rows, counts, rejects and difficulty shift.

    Reads what each step reads (see the step functions); writes `cluster_id`,
    `selection_score`, `selected_by` and, for GRAPE, `loglik_per_token`.
    Counts add up over steps ("kept" is the final number of rows); rejected
    rows carry the step that dropped them (`select.<method>`). `difficulty`
    buckets problems by DART pass rate (pooled over sampling models; 'unknown'
    without `query_info`).

    Args:
        table: SAMPLE_SCHEMA rows (not modified).
        config: the steps and shared settings.
        scorer: the GRAPE target model, required by GRAPE steps.
        conversation: row -> its exported conversation, required by GRAPE steps.
        query_info: DART's per-problem statistics (QUERY_INFO_SCHEMA, one row per
            problem and sampling model), required by `per_problem: dart`.
    """
    grape_steps = config.grape_steps()
    if grape_steps and (scorer is None or conversation is None):
        raise ValueError("a GRAPE step needs both scorer and conversation")
    if any(step.per_problem == "dart" for step in grape_steps) and query_info is None:
        raise ValueError("GRAPE with per_problem 'dart' needs DART's query_info (its accepted count per problem)")
    allocation = dart_allocation(query_info) if query_info is not None else None
    for step in config.steps:
        if isinstance(step, S2LStep) and step.trajectories is not None and not Path(step.trajectories).is_file():
            raise FileNotFoundError(f"S2L trajectories file not found: {step.trajectories}")
    counts: dict[str, int] = {}
    rejected = []
    stats: dict[str, float] = {}
    current = table
    for position, step in enumerate(config.steps):
        result = _run_step(current, step, config, scorer, conversation, allocation)
        current = result.table
        rejected.append(result.rejected)
        for reason, count in result.counts.items():
            if reason != "kept":
                counts[reason] = counts.get(reason, 0) + count
        stats.update({f"{position}.{step.method}.{name}": value for name, value in result.stats.items()})
        stats[f"{position}.{step.method}.kept"] = float(result.counts["kept"])
    counts = {"kept": current.num_rows, **counts}
    pass_rates = pooled_pass_rates(query_info) if query_info is not None else {}
    return SelectResult(
        table=current,
        counts=counts,
        rejected=pa.concat_tables(rejected),
        stats=stats,
        difficulty=difficulty_shift(table, current, pass_rates),
    )

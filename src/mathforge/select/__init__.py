"""The selection stage: choose a small, strong training set from a large pool.

`select(table, config)` applies the configured steps in order, each to the
previous step's output: e.g. GRAPE (best-fitting correct response per problem)
then k-means across problems. Each step is one algorithm module:

- `kmeans.select_kmeans`: Diversify and Conquer (k-means diversity, kMQ).
- `s2l.select_s2l`: SmallToLarge (clusters of proxy-model loss trajectories).
- `grape.select_grape`: GRAPE (highest log-likelihood per token under the target model).

Columns written: `cluster_id`, `selection_score`, `selected_by` ('+'-joined
methods, e.g. 'grape+kmeans') and, for GRAPE, `loglik_per_token`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Callable, Literal, Union

import pyarrow as pa
from pydantic import Field

from mathforge.config import Section
from mathforge.generation.base import Generator, Prompt
from mathforge.select.base import Budget, SelectResult, require_columns
from mathforge.select.embeddings import DEFAULT_EMBEDDING_MODEL, EmbeddingText, embed_texts, embedding_texts
from mathforge.select.grape import select_grape
from mathforge.select.kmeans import Split, WithinCluster, select_kmeans, validate_quality_column
from mathforge.select.s2l import ProxyTraining, compute_trajectories, read_trajectories, select_s2l

__all__ = [
    "Budget",
    "GrapeStep",
    "KMeansStep",
    "ProxyTraining",
    "S2LStep",
    "SelectConfig",
    "SelectResult",
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
    per_problem: int = Field(default=1, ge=1, description="Responses kept per problem.")


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


def _run_step(
    table: pa.Table,
    step: KMeansStep | S2LStep | GrapeStep,
    config: SelectConfig,
    generator: Generator | None,
    prompt_fn: Callable[[str], Prompt] | None,
) -> SelectResult:
    if isinstance(step, GrapeStep):
        return select_grape(table, generator=generator, prompt_fn=prompt_fn, per_problem=step.per_problem)  # type: ignore[arg-type]
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
    generator: Generator | None = None,
    prompt_fn: Callable[[str], Prompt] | None = None,
) -> SelectResult:
    """Apply the configured selection steps in order; return the kept rows, counts and rejects.

    Reads what each step reads (see the step functions); writes `cluster_id`,
    `selection_score`, `selected_by` and, for GRAPE, `loglik_per_token`.
    Counts add up over steps ("kept" is the final number of rows); rejected
    rows carry the step that dropped them (`select.<method>`).

    Args:
        table: SAMPLE_SCHEMA rows (not modified).
        config: the steps and shared settings.
        generator: target-model scorer, required by GRAPE steps.
        prompt_fn: problem text -> generation prompt, required by GRAPE steps.
    """
    if any(isinstance(step, GrapeStep) for step in config.steps) and (generator is None or prompt_fn is None):
        raise ValueError("a GRAPE step needs both generator and prompt_fn")
    for step in config.steps:
        if isinstance(step, S2LStep) and step.trajectories is not None and not Path(step.trajectories).is_file():
            raise FileNotFoundError(f"S2L trajectories file not found: {step.trajectories}")
    counts: dict[str, int] = {}
    rejected = []
    stats: dict[str, float] = {}
    current = table
    for position, step in enumerate(config.steps):
        result = _run_step(current, step, config, generator, prompt_fn)
        current = result.table
        rejected.append(result.rejected)
        for reason, count in result.counts.items():
            if reason != "kept":
                counts[reason] = counts.get(reason, 0) + count
        stats.update({f"{position}.{step.method}.{name}": value for name, value in result.stats.items()})
        stats[f"{position}.{step.method}.kept"] = float(result.counts["kept"])
    counts = {"kept": current.num_rows, **counts}
    return SelectResult(table=current, counts=counts, rejected=pa.concat_tables(rejected), stats=stats)

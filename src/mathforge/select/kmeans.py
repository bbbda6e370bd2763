"""k-means diversity selection: Diversify and Conquer (Yu, Chen, Ahmadian, Fadaee, 2024).

The paper embeds every example, runs k-means, splits the budget across the
clusters and picks within each cluster: nearest to the centroid (kM-Closest),
at random (kM-Random), or at random with probabilities softmax(quality)
without replacement (kMQ, its best static variant). Here:

- Same three within-cluster rules; kMQ's softmax takes a temperature and any
  numeric column as the quality (e.g. GRAPE's `loglik_per_token`), sampled
  without replacement with the Gumbel-top-k trick (same distribution as
  sequential softmax draws).
- Budget split: the paper's code takes `min(budget // K, size)` per cluster and
  leaves what small clusters cannot fill unspent. Here clusters are visited
  smallest first and pass their shortfall on (S2L's balanced rule,
  `base.take_balanced`), so the budget is met; a proportional split is offered
  too. Budgets may be in tokens.
- The paper's iterative refinement (re-weighting clusters with training
  signals between rounds) is not implemented.
- Euclidean k-means on the unit-normalized embeddings `embeddings.py` gives
  (close to spherical k-means); scikit-learn's Lloyd `KMeans` up to
  `FULL_KMEANS_MAX_ROWS` rows, `MiniBatchKMeans` above (1M x 384 in minutes on
  2 cores, see benchmarks/select_scale.py).
"""

from __future__ import annotations

import math
import warnings
from typing import Literal

import numpy as np
import pyarrow as pa
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.exceptions import ConvergenceWarning

from mathforge.select.base import Budget, SelectResult, finish_selection, group_rows, require_columns, take_balanced

Split = Literal["equal", "proportional"]
WithinCluster = Literal["nearest", "random", "quality"]

#: Above this many rows, MiniBatchKMeans replaces full-batch Lloyd iterations.
FULL_KMEANS_MAX_ROWS = 20_000
#: Mini-batch k-means stops after about this many samples per centroid (a running mean of 2,000 has settled).
MINIBATCH_SAMPLES_PER_CLUSTER = 2000
#: k-means++ restarts of full-batch k-means (the best inertia wins).
FULL_KMEANS_STARTS = 3
#: Cap of the default cluster count (sqrt(1M) = 1000).
MAX_DEFAULT_CLUSTERS = 1000
#: Rows per chunk when computing distances to centroids (bounds temporary memory).
DISTANCE_CHUNK_ROWS = 65_536


def default_n_clusters(n_rows: int) -> int:
    """Return ceil(sqrt(n_rows)) capped at 1,000: the usual rule of thumb for k.

    >>> default_n_clusters(10_000)
    100
    """
    return max(1, min(MAX_DEFAULT_CLUSTERS, math.ceil(math.sqrt(n_rows))))


def cluster_embeddings(embeddings: np.ndarray, n_clusters: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Cluster rows with k-means; return (labels int64, Euclidean distance to own centroid float32)."""
    n_clusters = min(n_clusters, len(embeddings))
    if n_clusters == 1:
        centers = embeddings.mean(axis=0, keepdims=True, dtype=np.float64).astype(embeddings.dtype)
        labels = np.zeros(len(embeddings), dtype=np.int64)
    else:
        if len(embeddings) <= FULL_KMEANS_MAX_ROWS:
            # Best of 3 k-means++ starts: one start can split a big cluster and
            # swallow a tiny one, the very case diversity selection exists for.
            model = KMeans(n_clusters=n_clusters, n_init=FULL_KMEANS_STARTS, random_state=seed)
        else:
            # Batches several times k keep every centroid updated at each step.
            # Early stopping on the smoothed inertia is erratic when the data has
            # little cluster structure (seen: 92 to 2,400 steps on the same 100k
            # rows), so the run is also capped at MINIBATCH_SAMPLES_PER_CLUSTER
            # samples per centroid, in whole epochs. One k-means++ start on
            # max(3k, 3,072) rows (scikit-learn's default init size is 3,072):
            # at k = 1,000 it takes ~5 s on 2 cores, on 12,288 rows ~16 s.
            batch_size = max(4096, 4 * n_clusters)
            model = MiniBatchKMeans(
                n_clusters=n_clusters,
                batch_size=batch_size,
                init_size=min(len(embeddings), max(3 * n_clusters, 3072)),
                n_init=1,
                max_iter=max(1, math.ceil(MINIBATCH_SAMPLES_PER_CLUSTER * n_clusters / len(embeddings))),
                max_no_improvement=10,
                # scikit-learn moves centroids whose counts fall under 1% of the
                # largest to random points: that deletes genuinely small clusters.
                reassignment_ratio=0.0,
                random_state=seed,
            )
        with warnings.catch_warnings():
            # Fewer distinct points than k (duplicate texts) is legitimate input:
            # the surplus clusters just stay empty.
            warnings.simplefilter("ignore", ConvergenceWarning)
            labels = model.fit_predict(embeddings).astype(np.int64)
        centers = model.cluster_centers_.astype(embeddings.dtype)
    distances = np.empty(len(embeddings), dtype=np.float32)
    for start in range(0, len(embeddings), DISTANCE_CHUNK_ROWS):
        stop = start + DISTANCE_CHUNK_ROWS
        distances[start:stop] = np.linalg.norm(embeddings[start:stop] - centers[labels[start:stop]], axis=1)
    return labels, distances


def _within_cluster_key(
    table: pa.Table,
    distances: np.ndarray,
    within: WithinCluster,
    quality_column: str,
    temperature: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Sort key per row (ascending = taken first) implementing the within-cluster rule."""
    if within == "nearest":
        return distances.astype(np.float64)
    if within == "random":
        return rng.random(len(distances))
    quality = table.column(quality_column).to_numpy(zero_copy_only=False).astype(np.float64)
    # Gumbel-top-k: sorting q/T + Gumbel noise is sampling without replacement
    # with probabilities softmax(q/T) (Kool et al., 2019).
    return -(quality / temperature + rng.gumbel(size=len(quality)))


def validate_quality_column(table: pa.Table, quality_column: str) -> None:
    """Raise unless `quality_column` exists, is numeric, and has no nulls or non-finite values."""
    require_columns(table, [quality_column], why="within='quality'")
    column = table.column(quality_column)
    if not (pa.types.is_floating(column.type) or pa.types.is_integer(column.type)):
        raise TypeError(f"quality column {quality_column!r} must be numeric, got {column.type}")
    if column.null_count:
        raise ValueError(f"quality column {quality_column!r} has {column.null_count} nulls")
    if not np.isfinite(column.to_numpy(zero_copy_only=False).astype(np.float64)).all():
        raise ValueError(f"quality column {quality_column!r} has non-finite values")


def select_kmeans(
    table: pa.Table,
    *,
    budget: Budget,
    embeddings: np.ndarray,
    seed: int = 0,
    n_clusters: int | None = None,
    split: Split = "equal",
    within: WithinCluster = "nearest",
    quality_column: str = "loglik_per_token",
    temperature: float = 1.0,
) -> SelectResult:
    """Keep a diverse subset: k-means on embeddings, budget split across clusters.

    Reads `sample_id`, `problem_id`, `n_completion_tokens` (token budgets) and
    `quality_column` (within='quality'); writes `cluster_id`, `selection_score`
    (negative Euclidean distance to the cluster centroid: higher is more
    typical of its cluster) and appends 'kmeans' to `selected_by`. Dropped
    rows get the reason 'not_selected'.

    Args:
        table: rows to select from (not modified).
        budget: rows or tokens to keep.
        embeddings: float array (n_rows, dim), row i embeds table row i.
        seed: fixes k-means initialization and random draws.
        n_clusters: k; None means `default_n_clusters(n_rows)`. Capped at n_rows.
        split: 'equal' (every cluster the same share, kM-*) or 'proportional' to cluster size.
        within: 'nearest' to centroid, 'random', or 'quality' (kMQ softmax sampling).
        quality_column: numeric column used by within='quality'.
        temperature: softmax temperature for within='quality' (> 0).
    """
    require_columns(table, ["sample_id"], why="select_kmeans")
    embeddings = np.asarray(embeddings)
    if embeddings.ndim != 2 or embeddings.shape[0] != table.num_rows:
        raise ValueError(f"embeddings must have shape ({table.num_rows}, dim), got {embeddings.shape}")
    if not np.issubdtype(embeddings.dtype, np.floating):
        raise TypeError(f"embeddings must be floating point, got {embeddings.dtype}")
    if n_clusters is not None and n_clusters < 1:
        raise ValueError(f"n_clusters must be >= 1, got {n_clusters}")
    if split not in ("equal", "proportional"):
        raise ValueError(f"split must be 'equal' or 'proportional', got {split!r}")
    if within not in ("nearest", "random", "quality"):
        raise ValueError(f"within must be 'nearest', 'random' or 'quality', got {within!r}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if within == "quality":
        validate_quality_column(table, quality_column)
    costs = budget.costs(table)
    if table.num_rows == 0:
        return finish_selection(table, np.zeros(0, dtype=np.int64), method="kmeans", drop_reasons="not_selected")

    k = min(n_clusters or default_n_clusters(table.num_rows), table.num_rows)
    labels, distances = cluster_embeddings(embeddings, k, seed=seed)
    rng = np.random.default_rng(seed)
    key = _within_cluster_key(table, distances, within, quality_column, temperature, rng)
    keep = take_balanced(group_rows(labels, key), costs, budget.amount, proportional=split == "proportional")
    return finish_selection(
        table,
        keep,
        method="kmeans",
        drop_reasons="not_selected",
        columns={"cluster_id": labels, "selection_score": -distances.astype(np.float64)},
        stats={
            "n_clusters": float(k),
            "n_clusters_used": float(len(np.unique(labels[keep]))),
            "budget_spent": float(costs[keep].sum()),
        },
    )

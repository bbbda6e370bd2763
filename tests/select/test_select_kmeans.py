"""k-means diversity selection on synthetic embeddings with planted clusters."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from mathforge.select import Budget, select_kmeans
from mathforge.select.kmeans import FULL_KMEANS_MAX_ROWS, cluster_embeddings

#: Very unequal planted cluster sizes (1,500 : 2).
SIZES = [1500, 400, 90, 25, 6, 2]


def planted(sizes=SIZES, dim=16, seed=0):
    """Well-separated Gaussian blobs: (embeddings float32, planted label per row)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(len(sizes), dim)) * 30
    points = np.concatenate([centers[i] + rng.normal(size=(size, dim)) for i, size in enumerate(sizes)])
    return points.astype(np.float32), np.repeat(np.arange(len(sizes)), sizes)


def pool(n_rows, tokens=None):
    tokens = tokens if tokens is not None else np.full(n_rows, 10)
    return pa.table(
        {
            "sample_id": [f"s{i:05d}" for i in range(n_rows)],
            "problem_id": [f"p{i}" for i in range(n_rows)],
            "n_completion_tokens": pa.array(tokens, pa.int64()),
        }
    )


def kept_rows(result):
    return np.array([int(sid[1:]) for sid in result.table.column("sample_id").to_pylist()], dtype=np.int64)


def equal_shares(sizes, budget):
    """Ideal real-valued equal split: every cluster min(size, t), with t such that the shares sum to the budget."""
    low, high = 0.0, float(max(sizes))
    for _ in range(200):
        t = (low + high) / 2
        low, high = (t, high) if sum(min(s, t) for s in sizes) < budget else (low, t)
    return [min(s, high) for s in sizes]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("budget", [30, 120, 600])
@pytest.mark.parametrize("within", ["nearest", "random"])
def test_equal_split_draws_every_cluster_within_one_of_its_share(seed, budget, within):
    embeddings, truth = planted(seed=seed)
    result = select_kmeans(
        pool(len(truth)), budget=Budget(rows=budget), embeddings=embeddings, n_clusters=len(SIZES), seed=seed, within=within
    )
    kept = kept_rows(result)
    # The clusters found are the planted ones, so per-cluster counts are meaningful.
    labels = result.table.column("cluster_id").to_numpy()
    assert all(len(set(labels[truth[kept] == g])) == 1 for g in range(len(SIZES)))
    counts = np.bincount(truth[kept], minlength=len(SIZES))
    shares = equal_shares(SIZES, budget)
    assert counts.sum() == budget
    assert all(abs(count - share) <= 1 for count, share in zip(counts, shares)), (counts.tolist(), shares)
    assert (counts > 0).all()


def test_nearest_keeps_the_rows_closest_to_each_centroid():
    embeddings, truth = planted()
    labels, distances = cluster_embeddings(embeddings, len(SIZES), seed=0)
    result = select_kmeans(pool(len(truth)), budget=Budget(rows=60), embeddings=embeddings, n_clusters=len(SIZES))
    kept = np.zeros(len(truth), dtype=bool)
    kept[kept_rows(result)] = True
    for label in np.unique(labels):
        inside = labels == label
        if kept[inside].any() and (~kept[inside]).any():
            assert distances[inside & kept].max() <= distances[inside & ~kept].min()
    assert np.allclose(result.table.column("selection_score").to_numpy(), -distances[kept])


def test_quality_sampling_prefers_high_quality_rows():
    embeddings, truth = planted()
    quality = np.where(np.arange(len(truth)) % 2 == 0, 5.0, 0.0)
    table = pool(len(truth)).append_column("loglik_per_token", pa.array(quality))
    high_kept = {}
    for within in ("quality", "random"):
        result = select_kmeans(
            table, budget=Budget(rows=40), embeddings=embeddings, n_clusters=len(SIZES), within=within, temperature=0.1
        )
        kept = kept_rows(result)
        high_kept[within] = [
            (int((quality[kept][truth[kept] == g] == 5.0).sum()), int((truth[kept] == g).sum()), int((quality[truth == g] == 5.0).sum()))
            for g in range(len(SIZES))
        ]
    # Odds exp(50) : 1 per draw: each cluster takes high-quality rows while it has any.
    assert all(high == min(n_kept, n_high) for high, n_kept, n_high in high_kept["quality"])
    random_high = sum(high for high, _, _ in high_kept["random"])
    assert 10 < random_high < 30


def test_proportional_split_keeps_cluster_fractions():
    embeddings, truth = planted(sizes=[800, 200])
    result = select_kmeans(pool(1000), budget=Budget(rows=100), embeddings=embeddings, n_clusters=2, split="proportional")
    assert np.bincount(truth[kept_rows(result)]).tolist() == [80, 20]


def test_token_budget_is_never_exceeded():
    embeddings, truth = planted()
    tokens = np.random.default_rng(3).integers(20, 400, len(truth))
    result = select_kmeans(pool(len(truth), tokens), budget=Budget(tokens=5000), embeddings=embeddings, n_clusters=6)
    spent = tokens[kept_rows(result)].sum()
    assert spent <= 5000
    assert spent == result.stats["budget_spent"]
    assert spent > 4000
    assert len(np.unique(truth[kept_rows(result)])) == len(SIZES)


def test_same_seed_same_output_and_input_untouched():
    embeddings, truth = planted()
    table = pool(len(truth))
    before = table.to_pylist()
    first = select_kmeans(table, budget=Budget(rows=50), embeddings=embeddings, within="random", seed=7)
    second = select_kmeans(table, budget=Budget(rows=50), embeddings=embeddings.copy(), within="random", seed=7)
    assert first.table.equals(second.table)
    assert table.to_pylist() == before
    assert first.counts == {"kept": 50, "not_selected": len(truth) - 50}
    assert first.table.column("selected_by").unique().to_pylist() == ["kmeans"]


def test_minibatch_path_on_a_large_pool_keeps_planted_structure():
    sizes = [FULL_KMEANS_MAX_ROWS, 900, 100]
    embeddings, truth = planted(sizes=sizes, dim=8)
    result = select_kmeans(pool(len(truth)), budget=Budget(rows=300), embeddings=embeddings, n_clusters=3)
    assert np.bincount(truth[kept_rows(result)]).tolist() == [100, 100, 100]


def test_more_clusters_than_rows_and_empty_pool():
    embeddings, _ = planted(sizes=[3, 2])
    result = select_kmeans(pool(5), budget=Budget(rows=10), embeddings=embeddings, n_clusters=50)
    assert result.counts == {"kept": 5}
    empty = select_kmeans(pool(0), budget=Budget(rows=10), embeddings=np.zeros((0, 4), np.float32))
    assert empty.counts == {"kept": 0} and empty.table.num_rows == 0


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"embeddings": np.zeros((3, 4), np.float32)}, ValueError),
        ({"embeddings": np.zeros((10, 4), np.int64)}, TypeError),
        ({"within": "farthest"}, ValueError),
        ({"split": "random"}, ValueError),
        ({"n_clusters": 0}, ValueError),
        ({"temperature": 0.0}, ValueError),
        ({"within": "quality", "quality_column": "pass_rate"}, KeyError),
    ],
    ids=["shape", "dtype", "within", "split", "n_clusters", "temperature", "quality_missing"],
)
def test_invalid_arguments_are_rejected_before_work(kwargs, error):
    arguments = {"budget": Budget(rows=2), "embeddings": np.zeros((10, 4), np.float32), **kwargs}
    with pytest.raises(error):
        select_kmeans(pool(10), **arguments)


def test_quality_column_with_nulls_is_rejected():
    table = pool(4).append_column("loglik_per_token", pa.array([1.0, None, 2.0, 3.0]))
    with pytest.raises(ValueError, match="nulls"):
        select_kmeans(table, budget=Budget(rows=2), embeddings=np.eye(4, dtype=np.float32), within="quality")

"""How k-means selection scales: 100k, 300k and 1M random 384-d float32 vectors, keep 5%.

Each size runs in a fresh subprocess so its peak RSS (getrusage ru_maxrss,
which includes the input vectors themselves, 1.5 GB at 1M) is its own. The
selection is `select_kmeans` with k = 1,000 at every size: the default rule
ceil(sqrt(n)) gives exactly 1,000 at 1M (the acceptance size), and a fixed k
keeps the work per row constant, so the fitted exponent measures growth in n
alone. Vectors are random unit vectors: with no cluster structure, early
stopping has no clear optimum to settle on (slower than real embeddings).

Times: wall and CPU (user + system, both threads). Other processes on the
machine stretch wall time (and OpenMP spin-waits stretch CPU time a little),
so the growth exponent is fitted to CPU seconds; the wall exponent and the
1-minute load average after each size are printed too. At fixed k the cost
is a part that does not grow with n (one k-means++ start on 3,072 rows,
~5 s, and at most ~500 mini-batch steps of 4,096 rows) plus a part linear
in n (the label and distance passes), so the exponent over these sizes is
well below 1.

Baseline in the same process: one brute-force assignment of every row to
1,000 centroids (scikit-learn's pairwise_distances_argmin), the least work any
k-means over the pool does; `ratio` = selection time / that pass.

Run: .venv/bin/python benchmarks/select_scale.py [--sizes 100000,300000,1000000]
Last line: t_1m_s=... peak_gb=... exponent=...
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time

SIZES = (100_000, 300_000, 1_000_000)
DIM = 384
FRACTION = 0.05
N_CLUSTERS = 1000


def cpu_seconds() -> float:
    """User + system CPU time of this process, all threads (seconds)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_worker(n_rows: int) -> dict[str, float]:
    """Select 5% of n_rows random vectors; return timings (s) and peak RSS (GB, 1e9 bytes)."""
    import numpy as np
    import pyarrow as pa
    from sklearn.metrics import pairwise_distances_argmin

    from mathforge.select import Budget, select_kmeans

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((n_rows, DIM), dtype=np.float32)
    # Normalized in chunks: a whole-array norm would allocate a second copy and inflate the peak.
    for start in range(0, n_rows, 65_536):
        chunk = vectors[start : start + 65_536]
        chunk /= np.linalg.norm(chunk, axis=1, keepdims=True)
    table = pa.table(
        {
            "sample_id": pa.array([f"s{i}" for i in range(n_rows)], pa.string()),
            "problem_id": pa.array([f"p{i}" for i in range(n_rows)], pa.string()),
            "n_completion_tokens": pa.array(rng.integers(50, 800, n_rows), pa.int64()),
        }
    )
    cpu_start, start = cpu_seconds(), time.perf_counter()
    result = select_kmeans(table, budget=Budget(rows=int(n_rows * FRACTION)), embeddings=vectors, n_clusters=N_CLUSTERS, seed=0)
    select_s, select_cpu_s = time.perf_counter() - start, cpu_seconds() - cpu_start
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9
    start = time.perf_counter()
    pairwise_distances_argmin(vectors, vectors[:N_CLUSTERS])
    baseline_s = time.perf_counter() - start
    return {
        "n": n_rows,
        "input_gb": vectors.nbytes / 1e9,
        "select_s": select_s,
        "select_cpu_s": select_cpu_s,
        "peak_gb": peak_gb,
        "baseline_s": baseline_s,
        "kept": result.counts["kept"],
        "clusters_used": result.stats["n_clusters_used"],
        "load": os.getloadavg()[0],
    }


def fit_exponent(sizes: list[float], values: list[float]) -> float:
    """Least-squares slope of log(value) against log(size)."""
    xs = [math.log(s) for s in sizes]
    ys = [math.log(v) for v in values]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / sum((x - mean_x) ** 2 for x in xs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(str(s) for s in SIZES))
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(run_worker(args.worker)))
        return
    rows = []
    for n_rows in (int(s) for s in args.sizes.split(",")):
        output = subprocess.run(
            [sys.executable, __file__, "--worker", str(n_rows)], check=True, capture_output=True, text=True
        ).stdout
        row = json.loads(output.strip().splitlines()[-1])
        rows.append(row)
        print(
            f"n={row['n']:>9,}  select {row['select_s']:7.1f} s wall {row['select_cpu_s']:7.1f} s CPU  peak {row['peak_gb']:5.2f} GB (vectors {row['input_gb']:.2f})  "
            f"kept {row['kept']:,} from {row['clusters_used']:.0f} clusters  "
            f"one assignment pass {row['baseline_s']:5.1f} s  ratio {row['select_s'] / row['baseline_s']:.1f}x  load {row['load']:.1f}"
        )
    sizes = [r["n"] for r in rows]
    exponent = fit_exponent(sizes, [r["select_cpu_s"] for r in rows]) if len(rows) > 1 else float("nan")
    wall_exponent = fit_exponent(sizes, [r["select_s"] for r in rows]) if len(rows) > 1 else float("nan")
    largest = rows[-1]
    print(f"growth exponent of CPU time {exponent:.2f}, of wall time {wall_exponent:.2f}")
    print(f"t_1m_s={largest['select_s']:.1f} peak_gb={largest['peak_gb']:.2f} exponent={exponent:.2f}")


if __name__ == "__main__":
    main()

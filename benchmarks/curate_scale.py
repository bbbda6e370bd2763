"""Time dedup and decontamination of a million synthetic samples against a 10k-item benchmark.

The rows: `--problems` distinct problems (about 45 tokens, Zipf-distributed
words and random numbers) with `--rows / --problems` responses each (about
120 tokens). Planted in them: exact duplicate responses (2% of rows),
rephrased responses (1%), edited copies of problems under new ids (1% of
problems) and benchmark items with one word changed (0.5% of problems). The
benchmark: 10k synthetic items drawn like the problems. The pipeline steps
timed are `decontaminate` (problem column, 13-grams), `dedup_exact` and
`dedup_near`, with default settings; generation is not timed.

Baseline in the same run: datasketch's own per-row MinHash (`update_batch`)
plus `MinHashLSH.insert` on a sample of responses, extrapolated to all rows,
against our signature step on the same rows.

    python benchmarks/curate_scale.py [--rows 1000000] [--problems 200000] [--benchmark-items 10000]

Last line: ``t_1m_s=... peak_gb=...`` (wall seconds of the three steps,
scaled to a million rows; peak resident memory of the curating process,
the input table included; the data are generated in a child process).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from datasketch import MinHash, MinHashLSH

from mathforge.benchmark_sets import load_benchmark_set
from mathforge.curate import DecontaminationConfig, decontaminate, dedup_exact, dedup_near
from mathforge.curate.dedup import DEFAULT_RESPONSE_SHINGLE_SIZE, fold_to_32_bits, signatures_of_shingles
from mathforge.curate.text import shingle_sets, tokenize

VOCABULARY_SIZE = 30_000
CHUNK_ROWS = 100_000


def vocabulary(rng: np.random.Generator) -> np.ndarray:
    """Return pronounceable pseudo-words; index 0 is the most frequent under the Zipf draw."""
    syllables = [c + v for c in "bcdfghklmnprstvwz" for v in "aeiou"]
    words: dict[str, None] = {}
    while len(words) < VOCABULARY_SIZE:
        picks = rng.integers(0, len(syllables), (VOCABULARY_SIZE, 4))
        lengths = rng.integers(1, 5, VOCABULARY_SIZE)
        for row, length in zip(picks, lengths):
            words.setdefault("".join(syllables[i] for i in row[:length]), None)
    return np.array(list(words)[:VOCABULARY_SIZE])


def texts(rng: np.random.Generator, words: np.ndarray, n: int, mean_tokens: int) -> list[str]:
    """Return n texts of Zipf-drawn words with a number every ~8 tokens."""
    lengths = rng.integers(mean_tokens * 2 // 3, mean_tokens * 4 // 3, n)
    ranks = np.minimum(rng.zipf(1.3, int(lengths.sum())) - 1, VOCABULARY_SIZE - 1)
    tokens = words[ranks].astype(object)
    is_number = rng.random(len(tokens)) < 0.12
    tokens[is_number] = rng.integers(0, 1000, int(is_number.sum())).astype(str)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    return [" ".join(tokens[offsets[i] : offsets[i + 1]]) + "?" for i in range(n)]


def edit(text: str, rng: np.random.Generator, words: np.ndarray) -> str:
    """Replace one word that is not a number: a light edit."""
    tokens = text.split(" ")
    candidates = [i for i, t in enumerate(tokens) if not t.rstrip("?").isdigit()]
    tokens[candidates[int(rng.integers(len(candidates)))]] = str(words[int(rng.integers(100, 1000))])
    return " ".join(tokens)


def write_dataset(directory: str, n_rows: int, n_problems: int, n_items: int, seed: int) -> None:
    """Write samples.parquet, benchmark.jsonl and planted.json into `directory` (run in a child process)."""
    rng = np.random.default_rng(seed)
    words = vocabulary(rng)
    benchmark_texts = texts(rng, words, n_items, 45)
    problems = texts(rng, words, n_problems, 45)
    n_copies, n_leaks = n_problems // 100, n_problems // 200
    targets = rng.choice(n_problems, n_copies + n_leaks, replace=False)
    for i in targets[:n_copies]:
        problems[i] = edit(problems[int(rng.integers(n_problems))], rng, words)
    for i in targets[n_copies:]:
        problems[i] = edit(benchmark_texts[int(rng.integers(n_items))], rng, words)
    problems_array = np.array(problems, dtype=object)
    per_problem = n_rows // n_problems
    chunk = per_problem * max(1, CHUNK_ROWS // per_problem)
    planted = {"problem_copies": n_copies, "leaked_problems": n_leaks, "exact_responses": 0, "rephrased_responses": 0}
    schema = pa.schema([(name, pa.string()) for name in ("sample_id", "problem_id", "problem", "response")])
    with pq.ParquetWriter(Path(directory) / "samples.parquet", schema) as writer:
        for begin in range(0, n_rows, chunk):
            size = min(chunk, n_rows - begin)
            responses = np.array(texts(rng, words, size, 120), dtype=object)
            # A duplicate or rephrasing copies the previous response of the same problem (same block of rows).
            exact = rng.choice(size, size // 50, replace=False)
            exact = exact[exact % per_problem != 0]
            responses[exact] = responses[exact - 1]
            rephrased = rng.choice(size, size // 100, replace=False)
            rephrased = rephrased[rephrased % per_problem != 0]
            responses[rephrased] = [edit(responses[i - 1], rng, words) for i in rephrased]
            planted["exact_responses"] += len(exact)
            planted["rephrased_responses"] += len(rephrased)
            problem_index = (begin + np.arange(size)) // per_problem
            writer.write_table(
                pa.table(
                    {
                        "sample_id": [f"s{i}" for i in range(begin, begin + size)],
                        "problem_id": [f"p{i}" for i in problem_index],
                        "problem": pa.array(problems_array[problem_index], pa.string()),
                        "response": pa.array(responses, pa.string()),
                    },
                    schema=schema,
                )
            )
    with open(Path(directory) / "benchmark.jsonl", "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps({"id": f"b{i}", "problem": text}) + "\n" for i, text in enumerate(benchmark_texts))
    (Path(directory) / "planted.json").write_text(json.dumps(planted))


def datasketch_baseline(responses: list[str], n_total: int) -> tuple[float, float]:
    """Return (seconds of datasketch per-row MinHash + LSH insert extrapolated to n_total, ours on the same rows, extrapolated)."""
    shingles, offsets = shingle_sets(tokenize(responses), DEFAULT_RESPONSE_SHINGLE_SIZE)
    values = fold_to_32_bits(shingles)
    start = time.perf_counter()
    signatures_of_shingles(values, offsets, num_perm=128, seed=1)
    ours = time.perf_counter() - start
    per_row = values.tolist()
    index = MinHashLSH(threshold=0.7, num_perm=128)
    start = time.perf_counter()
    for i in range(len(responses)):
        sketch = MinHash(num_perm=128, seed=1, hashfunc=int)
        sketch.update_batch(per_row[offsets[i] : offsets[i + 1]])
        index.insert(i, sketch)
    theirs = time.perf_counter() - start
    scale = n_total / len(responses)
    return theirs * scale, ours * scale


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--problems", type=int, default=200_000)
    parser.add_argument("--benchmark-items", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="curate-scale-") as directory:
        start = time.perf_counter()
        # Generated in a child process, so that this process's peak memory is the curation's (and the table's).
        child = multiprocessing.get_context("spawn").Process(
            target=write_dataset, args=(directory, args.rows, args.problems, args.benchmark_items, args.seed)
        )
        child.start()
        child.join()
        if child.exitcode != 0:
            raise SystemExit(f"data generation failed with exit code {child.exitcode}")
        table = pq.read_table(Path(directory) / "samples.parquet")
        benchmark = load_benchmark_set(Path(directory) / "benchmark.jsonl", require_answer=False)
        planted = json.loads((Path(directory) / "planted.json").read_text())
    print(
        f"built {table.num_rows} rows ({args.problems} problems) and {args.benchmark_items} benchmark items "
        f"in {time.perf_counter() - start:.0f} s; planted: {planted}"
    )
    rss_before_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20

    # As `curate` does: only the current table and each step's counts stay alive.
    timings, counts, leaked_problems = {}, {}, 0
    current = table
    del table
    for name, step in (
        # The lexical layers only: the embedding layer's cost is measured by benchmarks/decontam_scale.py.
        ("decontaminate", lambda rows: decontaminate(rows, [benchmark], DecontaminationConfig(layers=("exact", "ngram")))),
        ("dedup_exact", dedup_exact),
        ("dedup_near", dedup_near),
    ):
        start = time.perf_counter()
        result = step(current)
        timings[name] = time.perf_counter() - start
        counts.update(result.counts)
        if name == "decontaminate":
            leaked_problems = len(set(result.rejected.column("problem_id").to_pylist()))
        current = result.kept
        del result
    total = sum(timings.values())
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20

    for step, seconds in timings.items():
        print(f"{step:>14}: {seconds:7.1f} s")
    print(f"drops by reason: {counts}")
    print(
        f"leaked problems found: {leaked_problems} (planted {planted['leaked_problems']}, "
        f"plus any copy of a leaked problem)"
    )
    n_rows = sum(counts.values()) + current.num_rows
    print(
        f"kept {current.num_rows} of {n_rows} rows; peak RSS {peak_gb:.2f} GB "
        f"(after building the input: {rss_before_gb:.2f} GB)"
    )
    sample = current.column("response").slice(0, 20_000).to_pylist()
    theirs_s, ours_s = datasketch_baseline(sample, n_rows)
    print(
        f"baseline: datasketch MinHash.update_batch + MinHashLSH.insert per row, extrapolated to {n_rows} "
        f"responses: {theirs_s:.0f} s; our vectorized signatures: {ours_s:.0f} s (x{theirs_s / ours_s:.1f})"
    )
    scale = 1_000_000 / n_rows
    print(f"t_1m_s={total * scale:.1f} peak_gb={peak_gb:.2f} rows={n_rows} benchmark_items={args.benchmark_items}")


if __name__ == "__main__":
    main()

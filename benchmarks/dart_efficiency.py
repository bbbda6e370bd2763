"""DART sampling efficiency on the scripted generator (issue #6 acceptance).

1,000 queries with pass rates drawn from Beta(0.5, 0.5), uniform k_u = 4,
n_max = 512. Prints samples used / expected minimum (the sum over queries of
E[min(T, n_max)], T the negative-binomial number of trials to the k-th
success), the share of queries with p > 0.01 that reach k_u, and the same for
a DART-style baseline in the same run: every unsatisfied query cycled one prompt
at a time into fixed 16k-completion batches, stopping only after a batch (as
DART-Math's released code does). Then prop2diff: Spearman correlation between
the target and 1 - p over solved queries, and cost per accepted sample by
difficulty bucket.

Run: .venv/bin/python benchmarks/dart_efficiency.py [--queries 1000]
"""

from __future__ import annotations

import argparse
import random
import time
from collections import defaultdict

import numpy as np
from scipy.stats import binom, spearmanr

from mathforge.generation.base import GenerationParams
from mathforge.generation.scripted import ScriptedGenerator, ScriptedProblem
from mathforge.records import Problem
from mathforge.synthesis.dart import DartConfig, run_dart
from mathforge.verify import verify_answer


def expected_minimum(rates: list[float], k: int, cap: int) -> float:
    """Sum over queries of E[min(T, cap)] = sum_{t<cap} P(Binomial(t, p) < k)."""
    t = np.arange(cap)
    return float(sum(binom.cdf(k - 1, t, p).sum() if p > 0 else cap for p in rates))


def verify_many(pairs):
    return [verify_answer(reference, response) for reference, response in pairs]


def make_queries(n: int, seed: int) -> tuple[list[Problem], dict[str, float]]:
    rng = random.Random(seed)
    problems = [Problem(problem_id=f"q{i:04d}", problem=f"Query {i:04d}: compute the total.", answer=str(1000 + i), source="bench") for i in range(n)]
    rates = {p.problem_id: rng.betavariate(0.5, 0.5) for p in problems}
    return problems, rates


def scripted(problems, rates) -> ScriptedGenerator:
    # No malformed or truncated responses: every trial is a clean Bernoulli(p) draw.
    return ScriptedGenerator(
        [ScriptedProblem(p.problem_id, p.problem, p.answer) for p in problems],
        pass_rate=rates,
        malformed_rate=0.0,
        truncated_rate=0.0,
        seed=1,
    )


def dart_style_baseline(problems, rates, k: int, cap: int, batch: int = 16384) -> tuple[int, dict[str, int], int]:
    """DART-Math's loop: cycle unsatisfied queries one prompt each into fixed batches; check after each batch."""
    generator = scripted(problems, rates)
    trials = defaultdict(int)
    correct = defaultdict(int)
    by_id = {p.problem_id: p for p in problems}
    batches = 0
    while True:
        active = [p for p in problems if correct[p.problem_id] < k and trials[p.problem_id] < cap]
        if not active:
            break
        planned = []
        budget = {p.problem_id: cap - trials[p.problem_id] for p in active}
        while len(planned) < batch and any(budget.values()):
            for p in active:
                if budget[p.problem_id] and len(planned) < batch:
                    planned.append(p.problem_id)
                    budget[p.problem_id] -= 1
        counts = defaultdict(int)
        for problem_id in planned:
            counts[problem_id] += 1
        for n, group in _group_by_count(counts).items():
            outputs = generator.generate([by_id[q].problem for q in group], GenerationParams(n=n, seed=batches))
            verdicts = iter(verify_many([(by_id[q].answer, c.text) for q, row in zip(group, outputs) for c in row]))
            for q, row in zip(group, outputs):
                for _ in row:
                    trials[q] += 1
                    correct[q] += bool(next(verdicts).is_correct)
        batches += 1
    return sum(trials.values()), dict(correct), batches


def _group_by_count(counts: dict[str, int]) -> dict[int, list[str]]:
    groups = defaultdict(list)
    for problem_id, n in counts.items():
        groups[n].append(problem_id)
    return groups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    k, cap = 4, 512
    problems, rates = make_queries(args.queries, args.seed)
    minimum = expected_minimum(list(rates.values()), k, cap)
    reachable = [p.problem_id for p in problems if rates[p.problem_id] > 0.01]

    started = time.perf_counter()
    config = DartConfig(strategy="uniform", k_uniform=k, n_max=cap, max_per_round=cap, max_rounds=1000)
    ours = run_dart(problems, scripted(problems, rates), verify_many, config, prompt_fn=lambda p: p.problem)
    ours_s = time.perf_counter() - started
    ours_used = sum(q.n_trials for q in ours.query_info)
    info = {q.problem_id: q for q in ours.query_info}
    ours_reach = sum(info[q].n_correct >= k for q in reachable) / len(reachable)

    started = time.perf_counter()
    base_used, base_correct, base_batches = dart_style_baseline(problems, rates, k, cap)
    base_s = time.perf_counter() - started
    base_reach = sum(base_correct.get(q, 0) >= k for q in reachable) / len(reachable)

    print(f"queries={len(problems)} k_u={k} n_max={cap} expected_minimum={minimum:.0f}")
    print(f"mathforge: samples={ours_used} ratio={ours_used / minimum:.3f} rounds={ours.n_rounds} reach_k={ours_reach:.3f} wall_s={ours_s:.1f}")
    print(f"dart-style baseline: samples={base_used} ratio={base_used / minimum:.3f} batches={base_batches} reach_k={base_reach:.3f} wall_s={base_s:.1f}")

    p2d = DartConfig(strategy="prop2diff", k_max=16, n_probe=8, n_max=cap, max_per_round=cap, max_rounds=1000)
    result = run_dart(problems, scripted(problems, rates), verify_many, p2d, prompt_fn=lambda p: p.problem)
    solved = [q for q in result.query_info if q.n_correct > 0]
    rho = spearmanr([q.target for q in solved], [1 - rates[q.problem_id] for q in solved]).statistic
    print(f"prop2diff: solved={len(solved)} spearman_target_vs_difficulty={rho:.3f} rounds={result.n_rounds}")
    print("difficulty bucket (1-p)   queries  trials  accepted  trials_per_accepted")
    buckets = [(0.0, 0.2), (0.2, 0.4), (0.4, 0.6), (0.6, 0.8), (0.8, 0.95), (0.95, 1.0001)]
    accepted = defaultdict(int)
    for sample in result.accepted:
        if not sample.is_surplus:
            accepted[sample.problem_id] += 1
    for low, high in buckets:
        members = [q for q in result.query_info if low <= 1 - rates[q.problem_id] < high]
        n_trials = sum(q.n_trials for q in members)
        n_accepted = sum(accepted[q.problem_id] for q in members)
        per = n_trials / n_accepted if n_accepted else float("inf")
        print(f"  [{low:.2f}, {min(high, 1):.2f})          {len(members):7d} {n_trials:7d} {n_accepted:9d}  {per:10.1f}")
    print(
        f"samples_ratio={ours_used / minimum:.3f} reach_k={ours_reach:.3f} baseline_ratio={base_used / minimum:.3f} "
        f"baseline_reach_k={base_reach:.3f} rounds={ours.n_rounds} baseline_batches={base_batches} spearman={rho:.3f}"
    )


if __name__ == "__main__":
    main()

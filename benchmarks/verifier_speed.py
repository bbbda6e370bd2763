"""Throughput of mathforge's verifier against Math-Verify on the peer corpus, same run.

Each verifier runs in its own fresh process, single-threaded: it first verifies
a small fixed set of the project's own warm-up pairs (the LaTeX parser both
use builds its tables lazily), then times one pass over all cases of
`../shared/benchmarks/verifier_peer_cases.jsonl` with every cache cold. The
two are alternated for `--rounds` rounds (the machine is shared; the median
pass counts). mathforge is `verify_answer(gold, pred)` in process (its guards
bound the work); Math-Verify is the corpus's `ref_mathverify.verify`, which
keeps its own default 5 s signal timeout per comparison. For information, the
same cases also go through `VerifierPool` (`--pool-workers` processes).

Last line: `speedup=<mathforge pairs/s over Math-Verify pairs/s> mathforge_pairs_per_s=...
mathverify_pairs_per_s=... pool_pairs_per_s=...`; without the corpus, `skipped=1`.

Usage: python benchmarks/verifier_speed.py [--rounds 2] [--pool-workers 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

CORPUS_DIR = Path(__file__).resolve().parents[2] / "shared" / "benchmarks"
CORPUS = CORPUS_DIR / "verifier_peer_cases.jsonl"
# Written for this benchmark (not from the corpus): one pair per common answer shape.
WARMUP_PAIRS = [
    ("12", "The answer is $\\boxed{12}$."),
    ("\\frac{3}{4}", "So we get 0.75"),
    ("$x^2+1$", "Final Answer: The final answer is $1+x^2$. I hope it is correct."),
    ("\\sqrt{8}", "$2\\sqrt{2}$"),
    ("(1, 2)", "The point is $(1,2)$."),
    ("[0, 5)", "\\boxed{[0,5)}"),
    ("y = 2x + 1", "$2x - y + 1 = 0$"),
    ("x > 3", "We need $3 < x$."),
    ("\\begin{pmatrix} 1 & 0 \\\\ 0 & 1 \\end{pmatrix}", "$\\begin{bmatrix} 1 & 0 \\\\ 0 & 1 \\end{bmatrix}$"),
    ("\\{1, 2\\}", "\\boxed{\\{2, 1\\}}"),
    ("\\sin^2 x", "$1 - \\cos^2 x$"),
    ("50\\%", "It grows by 50 percent."),
    ("f(x) = 3x - 2", "$f(x)=-2+3x$"),
    ("\\sum_{k=1}^{n} k^2", "$\\frac{n(n+1)(2n+1)}{6}$"),
    ("(-\\infty, 1) \\cup (2, \\infty)", "$x<1$ or $x>2$"),
    ("\\text{Tuesday}", "The meeting is on **Tuesday**."),
    ("e^{2\\pi i}", "$\\cos(2\\pi) + i\\sin(2\\pi)$"),
    ("\\frac{a+b}{2}", "$\\dfrac{b+a}{2}$"),
    ("3 \\pm \\sqrt{5}", "$3+\\sqrt{5}, 3-\\sqrt{5}$"),
    ("\\log_2 (x) + \\ln(y)", "$\\ln y + \\log_{2} x$"),
]


def load_verifier(name: str):
    """Return f(gold, pred) -> bool for one verifier."""
    if name == "mathforge":
        from mathforge.verify import verify_answer

        return lambda gold, pred: verify_answer(gold, pred).is_correct is True
    import logging

    sys.path.insert(0, str(CORPUS_DIR))
    logging.disable(logging.CRITICAL)
    from ref_mathverify import verify

    return verify


def time_one_pass(name: str) -> None:
    """Child process: warm up, then time one pass over the corpus; print JSON."""
    cases = [json.loads(line) for line in CORPUS.open(encoding="utf-8") if line.strip()]
    verify = load_verifier(name)
    for gold, pred in WARMUP_PAIRS:
        verify(gold, pred)
    errors = 0
    started = time.perf_counter()
    for case in cases:
        try:
            verify(case["gold"], case["pred"])
        except Exception:  # a baseline failure costs its time, it does not stop the benchmark
            errors += 1
    elapsed = time.perf_counter() - started
    print(json.dumps({"n": len(cases), "seconds": elapsed, "errors": errors}))


def run_pass(name: str) -> dict:
    completed = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--one-pass", name], capture_output=True, text=True, check=True
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def pool_pass(workers: int) -> float:
    """Pairs per second through VerifierPool (startup excluded), for information."""
    from mathforge.verify import VerifierPool, VerifyConfig

    cases = [json.loads(line) for line in CORPUS.open(encoding="utf-8") if line.strip()]
    with VerifierPool(VerifyConfig(n_workers=workers, cache_size=0)) as pool:
        started = time.perf_counter()
        pool.verify_many([(case["gold"], case["pred"]) for case in cases])
        return len(cases) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="alternating passes per verifier")
    parser.add_argument("--pool-workers", type=int, default=2, help="workers for the informational pool pass")
    parser.add_argument("--one-pass", choices=["mathforge", "math-verify"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one_pass:
        time_one_pass(args.one_pass)
        return
    if not CORPUS.exists():
        print(f"peer corpus not found at {CORPUS}: nothing to measure")
        print("skipped=1")
        return
    rates: dict[str, list[float]] = {"math-verify": [], "mathforge": []}
    for round_index in range(args.rounds):
        for name in rates:
            result = run_pass(name)
            rate = result["n"] / result["seconds"]
            rates[name].append(rate)
            print(f"round {round_index + 1} {name:<12} {result['n']} pairs in {result['seconds']:6.2f} s  "
                  f"{rate:7.1f} pairs/s  errors={result['errors']}")
    mathforge, baseline = statistics.median(rates["mathforge"]), statistics.median(rates["math-verify"])
    pool_rate = pool_pass(args.pool_workers)
    print(f"median: mathforge {mathforge:.1f} pairs/s, math-verify {baseline:.1f} pairs/s (one process each)")
    print(f"VerifierPool with {args.pool_workers} workers, hard timeouts, cold cache: {pool_rate:.1f} pairs/s")
    print(
        f"speedup={mathforge / baseline:.2f} mathforge_pairs_per_s={mathforge:.1f} "
        f"mathverify_pairs_per_s={baseline:.1f} pool_pairs_per_s={pool_rate:.1f}"
    )


if __name__ == "__main__":
    main()

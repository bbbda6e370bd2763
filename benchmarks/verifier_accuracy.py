"""Accuracy of mathforge's verifier and Math-Verify on the peer corpus, in the same run.

The corpus (`../shared/benchmarks/verifier_peer_cases.jsonl` from the repository
root) holds 491 labelled (gold, pred) pairs taken from 15 other projects' test
suites; its README defines the flags and the "core" subset. Both verifiers run
through the corpus's own harness (`score_verifier.py`: each case in a forked
worker with a hard 5 s timeout; a timeout or error counts as "not equivalent").
mathforge is called as `verify_answer(gold, pred)` with the default policy
(lenient extraction); Math-Verify through the corpus's `ref_mathverify.verify`
(parse + verify, defaults).

Prints overall, core, family and per-source accuracy for both, the per-flag
table, mathforge's misses on the core subset, and as the last line
`accuracy_core=... fp_core=... accuracy_independent=... mathverify_core=...`.
Without the corpus it prints why and ends with `skipped=1`.

Usage: python benchmarks/verifier_accuracy.py [--workers 2] [--timeout 5]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from collections import defaultdict
from pathlib import Path
from types import ModuleType

from mathforge.verify import verify_answer

CORPUS_DIR = Path(__file__).resolve().parents[2] / "shared" / "benchmarks"
# The README's "core" subset: plain equivalence under default settings (457 cases).
CORE_EXCLUDED = frozenset(
    {"disputed_label", "extraction_policy", "grader_policy", "non_english", "escape_artifact", "precision=2", "precision=4"}
)


def verify_mathforge(gold: str, pred: str) -> bool:
    """The harness's f(gold, pred) -> bool for mathforge (reference first)."""
    return verify_answer(gold, pred).is_correct is True


def load_harness() -> ModuleType:
    spec = importlib.util.spec_from_file_location("score_verifier", CORPUS_DIR / "score_verifier.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def score(harness: ModuleType, target: str, cases: list[dict], timeout: float, workers: int) -> list[tuple[bool, str]]:
    """Return (said equivalent, status) per case, statuses as the harness reports them."""
    results = harness.run_all(target, cases, timeout, workers, quiet=True)
    return [(status == "ok" and bool(value), status) for (status, value), _ in results]


def tally(harness: ModuleType, cases: list[dict], said: list[tuple[bool, str]], keep) -> object:
    total = harness.Tally()
    for case, (answer, status) in zip(cases, said):
        if keep(case):
            total.add(bool(case["equivalent"]), answer, status)
    return total


def is_core(case: dict) -> bool:
    return not CORE_EXCLUDED & set(case["flags"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="harness worker processes")
    parser.add_argument("--timeout", type=float, default=5.0, help="per-case wall-clock limit, seconds")
    args = parser.parse_args()
    corpus = CORPUS_DIR / "verifier_peer_cases.jsonl"
    if not corpus.exists():
        print(f"peer corpus not found at {corpus}: nothing to measure")
        print("skipped=1")
        return
    harness = load_harness()
    cases = [json.loads(line) for line in corpus.open(encoding="utf-8") if line.strip()]
    targets = {"mathforge": f"{Path(__file__).resolve()}:verify_mathforge", "math-verify": f"{CORPUS_DIR / 'ref_mathverify.py'}:verify"}
    said = {name: score(harness, target, cases, args.timeout, args.workers) for name, target in targets.items()}

    def row(label: str, keep) -> str:
        cells = []
        for name in targets:
            result = tally(harness, cases, said[name], keep)
            cells.append(f"{name} acc={result.acc:.3f} fp={result.fp:3d} fn={result.fn:3d} to={result.timeouts}")
        count = sum(1 for case in cases if keep(case))
        return f"  {label[:44]:<44} n={count:4d}  " + "   ".join(cells)

    print(f"corpus: {corpus} ({len(cases)} cases; timeout {args.timeout}s; workers {args.workers})")
    print("subsets:")
    print(row("all", lambda case: True))
    print(row("core (README flag exclusions)", is_core))
    for family in ("independent", "math-verify"):
        print(row(f"family={family}", lambda case, family=family: case["family"] == family))
        print(row(f"core family={family}", lambda case, family=family: is_core(case) and case["family"] == family))
    print(row("needs_extraction", lambda case: case["needs_extraction"]))
    print(row("no_extraction", lambda case: not case["needs_extraction"]))
    print("per flag:")
    flags = defaultdict(int)
    for case in cases:
        for flag in case["flags"] or ["(no flags)"]:
            flags[flag] += 1
    for flag in sorted(flags, key=lambda name: -flags[name]):
        print(row(flag, lambda case, flag=flag: flag in (case["flags"] or ["(no flags)"])))
    print("per source:")
    for source in sorted({case["source"] for case in cases}):
        repository, path = source.split(":", 1)
        label = f"{repository.split('/')[-1]}:{Path(path.split()[0]).name}"
        print(row(label, lambda case, source=source: case["source"] == source))
    print("mathforge misses on the core subset:")
    for case, (answer, status) in zip(cases, said["mathforge"]):
        if is_core(case) and answer != case["equivalent"]:
            print(f"  [{case['id']}] label={case['equivalent']} said={answer} status={status} flags={case['flags']}")

    core = tally(harness, cases, said["mathforge"], is_core)
    independent = tally(harness, cases, said["mathforge"], lambda case: case["family"] == "independent")
    baseline_core = tally(harness, cases, said["math-verify"], is_core)
    baseline_independent = tally(harness, cases, said["math-verify"], lambda case: case["family"] == "independent")
    overall = tally(harness, cases, said["mathforge"], lambda case: True)
    print(
        f"accuracy_core={core.acc:.3f} fp_core={core.fp} accuracy_independent={independent.acc:.3f} "
        f"mathverify_core={baseline_core.acc:.3f} mathverify_fp_core={baseline_core.fp} "
        f"mathverify_independent={baseline_independent.acc:.3f} accuracy_all={overall.acc:.3f}"
    )


if __name__ == "__main__":
    main()

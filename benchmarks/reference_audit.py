"""Reference audit on planted wrong references (issue 18 acceptance).

`planted_references` gives problems of which every tenth carries a wrong
reference the scripted model does not share (its majority answer, pass rate in
[0.55, 0.95], is the true one; other problems have pass rates in [0.2, 0.95]).
DART samples them (uniform k_u = 4, n_max = 32, the real verifier), then the
audit runs with the default thresholds and with a few stricter majority shares.
Prints recall and precision of `suspect_reference` per seed and threshold, and
as the last line the pooled figures at the default threshold.

Run: python benchmarks/reference_audit.py [--problems 200] [--seeds 5]
"""

from __future__ import annotations

import argparse
import time

from mathforge.synthesis.audit_scenario import planted_scenario
from mathforge.synthesis.reference_audit import ReferenceAuditConfig, audit_references
from mathforge.verify import compare_answers

SHARES = (0.5, 0.55, 0.6, 0.7)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=200, help="problems per seed (every tenth planted)")
    parser.add_argument("--seeds", type=int, default=5, help="independent scenarios")
    args = parser.parse_args()
    default = ReferenceAuditConfig()
    pooled = {share: [0, 0, 0] for share in SHARES}  # true positives, flagged, planted
    started = time.perf_counter()
    for seed in range(args.seeds):
        problems, trials, planted, _ = planted_scenario(args.problems, seed=seed)
        for share in SHARES:
            config = default.model_copy(update={"min_majority_share": share})
            result = audit_references(problems, trials, config, compare_many=lambda pairs: [compare_answers(a, b) for a, b in pairs])
            flagged = {row.problem_id for row in result.suspects}
            hits = len(flagged & planted)
            pooled[share] = [pooled[share][0] + hits, pooled[share][1] + len(flagged), pooled[share][2] + len(planted)]
            print(
                f"seed={seed} share>{share}: planted={len(planted)} flagged={len(flagged)} "
                f"recall={hits / len(planted):.3f} precision={hits / max(1, len(flagged)):.3f} trials={trials.num_rows}"
            )
    for share, (hits, flagged, planted) in pooled.items():
        print(f"pooled share>{share}: recall={hits / planted:.3f} precision={hits / max(1, flagged):.3f}")
    hits, flagged, planted = pooled[default.min_majority_share]
    print(
        f"recall={hits / planted:.3f} precision={hits / max(1, flagged):.3f} planted={planted} flagged={flagged} "
        f"min_majority_share={default.min_majority_share} min_responses={default.min_responses} "
        f"seconds={time.perf_counter() - started:.1f}"
    )


if __name__ == "__main__":
    main()

"""Compare two extracted answers, cheapest test first.

The cascade is the MATH grader's (normalized string match) followed by
Math-Verify's (numbers, then SymPy), with these changes:

* Numbers are exact: integers and rationals compare as `Fraction`s, so two
  distinct large integers never merge. Tolerance is a stated policy, not a
  blanket `rel_tol`: machine-float printouts (12+ significant digits) get
  `rel_tol`; a shorter decimal matches an exact value only as its rounding or
  truncation (`approx_min_digits`), never a value it could have written exactly
  (`5.001` is not `5`). A decimal for an exact irrational (`1.414` for
  `\\sqrt{2}`) is further subject to the `approximate_constants` policy.
* Values of different magnitude are compared relatively, never under an
  absolute floor: `\\sqrt{2} \\cdot 10^{-50}` is not `\\sqrt{3} \\cdot 10^{-50}`, and
  `e^{-200}` is not 0. Constants made only of rationals (`2 \\cdot 10^{-50}`)
  are evaluated exactly; a nonzero value is equal to zero only when it is a
  rounding residue, i.e. it shrinks when evaluated at higher precision.
* Expressions with free symbols: a bounded `expand(a - b) == 0`, then numeric
  sampling at fixed pseudo-random points (30 digits), then `simplify(a - b) == 0`
  only when sampling cannot evaluate (undefined functions, symbolic sums).
  Sampling refutes cheaply and confirms reliably for the elementary
  expressions answers are made of; this is the reverse of "simplify first"
  and is what keeps the verifier fast.
* Equations compare as equations: same left side -> right sides, otherwise
  `(l1 - r1) / (l2 - r2)` must be a nonzero constant (`y = 2x + 3` and
  `2x - y + 3 = 0`). Inequalities and intervals compare as sets of reals
  (`x \\in [-2, 7]` and `-2 \\le x \\le 7`); multi-variable inequalities by
  the sign of a constant ratio.
* `\\pm` is a set of two branches and never equals one of them.

The reference comes first: a candidate `3 \\cdot 4 = 13` is read as its
result 13, a reference equation `7 = 11a + c` stays an equation.

Where each kind of value is compared (each module imports only those above it):
- `outcome`: what a comparison step returns, and how equal parts add up.
- `numbers`: exact numbers, decimals, rounding, the approximation policy.
- `symbolic`: expressions with free symbols (expand, sampling, simplify), and
  the numeric evaluation every symbolic test uses.
- `constants`: closed-form values without free symbols.
- `expressions`: one value against another, dispatched to the three above.
- `regions`: inequalities, intervals and unions, as sets of reals.
- `atoms`: single written values under the string, word, percent and unit policies.
- `nodes`: the dispatch by kind of parsed answer, with the kinds made of
  other answers (equations, tuples / lists / sets / mappings, matrices),
  which compare their parts through the same dispatch.
- `answers`: `compare_answers`, from two strings to a Verdict.

This package re-exports its public names, so
`from mathforge.verify.compare import compare_answers` keeps working.
"""

from mathforge.verify.compare.answers import compare_answers
from mathforge.verify.compare.atoms import compare_atoms
from mathforge.verify.compare.expressions import compare_values
from mathforge.verify.compare.nodes import compare_nodes
from mathforge.verify.compare.numbers import effective_config
from mathforge.verify.compare.outcome import Outcome
from mathforge.verify.compare.regions import Interval

__all__ = [
    "Interval",
    "Outcome",
    "compare_answers",
    "compare_atoms",
    "compare_nodes",
    "compare_values",
    "effective_config",
]

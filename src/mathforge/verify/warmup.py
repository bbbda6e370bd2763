"""Warm the LaTeX parser once, so worker processes do not pay for it inside their timeouts.

latex2sympy2_extended's ANTLR parser builds its prediction tables lazily: the
first expressions of each shape cost 10-300 ms, later ones well under one.
`VerifierPool` preloads this module in its fork server, so every worker,
including a replacement for a killed one, is forked with warm tables.
Importing the module warms the parser; that is its whole purpose.
"""

from __future__ import annotations

from mathforge.verify.compare import compare_answers

# One pair per grammar path the verifier exercises: fractions, roots, powers,
# functions, relations, matrices, sets, sums. Written for this purpose.
_WARMUP_PAIRS = (
    (r"\frac{x+1}{2}", r"\frac{1}{2}x + 0.5"),
    (r"3\sqrt{2} + \pi^{2}", r"\sqrt{18}+\pi^2"),
    (r"x^2 + 2*x + 1", r"(x+1)(x+1)"),
    (r"\sin(x)^2 + \cos^2 x", r"\tan^{2}(y) + 1"),
    (r"f(x) = 2x + 3", r"y = 3 + 2x"),
    (r"2x + 4y - 3 = 0", r"y = -\frac{1}{2}x + \frac{3}{4}"),
    (r"x \in [-2, 7)", r"-2 \le x < 7"),
    (r"\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}", r"\begin{bmatrix} 1 & 2 \\ 3 & 4 \end{bmatrix}"),
    (r"\{1, 2\} \cup (3, \infty)", r"\{2, 1\} \cup (3, \infty)"),
    (r"e^{i\pi} + \log_2 8 + \ln 2", r"2 + \ln(2)"),
    (r"\sum_{k=1}^{n} k", r"\frac{n(n+1)}{2}"),
    (r"\binom{5}{2} + 3!", r"16"),
    (r"a_{1} + b_n", r"b_{n} + a_1"),
)


def warm_parser() -> None:
    """Run the warm-up comparisons (idempotent; fast once the tables exist)."""
    for reference, candidate in _WARMUP_PAIRS:
        compare_answers(reference, candidate)


warm_parser()

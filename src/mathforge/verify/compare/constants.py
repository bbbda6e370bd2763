"""Constants: closed-form values without free symbols (`\\sqrt{2} \\cdot 10^{-50}`, `e^{-200}`, `10000!`).

Guarantees: values of different magnitude are compared relatively, never
under an absolute floor: `\\sqrt{2} \\cdot 10^{-50}` is not `\\sqrt{3} \\cdot
10^{-50}`, and `e^{-200}` is not 0. Constants made only of rationals
(`2 \\cdot 10^{-50}`) are evaluated exactly; a nonzero value equals zero only
when it is a rounding residue (SymPy's zero test decides). Large values get
digits down to the units place, so 10000! and 10000! + 1 stay apart.
"""

from __future__ import annotations

import mpmath
import sympy

from mathforge.verify.compare.numbers import (
    CONSTANT_DIGITS,
    approximates_constants,
    approximation_tolerance,
    as_number,
    compare_numbers,
    has_float_printout,
    has_irrational,
    is_rounding,
    plain_decimal,
)
from mathforge.verify.compare.outcome import Outcome
from mathforge.verify.compare.symbolic import evaluate, simplify_outcome
from mathforge.verify.config import VerifyConfig
from mathforge.verify.values import Expression, Number

_CONSTANT_TOLERANCE = mpmath.mpf("1e-45")
_MAX_CONSTANT_DIGITS = 100_000


def compare_constants(reference: Expression, candidate: Expression, config: VerifyConfig) -> Outcome:
    rationals = _exact_rationals(reference.expr, candidate.expr)
    if rationals is not None:
        return compare_numbers(*rationals, config)
    a, b = evaluate(reference.expr), evaluate(candidate.expr)
    if a is None or b is None:
        return simplify_outcome(reference.expr - candidate.expr)
    digits = CONSTANT_DIGITS
    magnitude = int(mpmath.log10(max(abs(a), abs(b), 1)))
    if magnitude > 20:
        # Large values need digits down to the units place, or 10000! and 10000! + 1 would merge.
        digits += magnitude
        if digits > _MAX_CONSTANT_DIGITS:
            return Outcome(None, "too_complex", "symbolic")
        a, b = evaluate(reference.expr, digits=digits), evaluate(candidate.expr, digits=digits)
        if a is None or b is None:
            return simplify_outcome(reference.expr - candidate.expr)
    with mpmath.workdps(digits):
        difference = abs(a - b)
        scale = max(abs(a), abs(b))
        if _same_constant(reference.expr, candidate.expr, a, b, digits) and (
            magnitude <= 20 or difference < mpmath.mpf("0.1")
        ):
            return Outcome(True, "symbolic_equal", "symbolic")
        allowed = approximates_constants(config)
        for approximate, exact, value in ((candidate, reference, a), (reference, candidate, b)):
            if approximate is candidate and not allowed:
                continue
            decimal = plain_decimal(approximate)
            if decimal is not None and not exact.literals and not value.imag:
                if is_rounding(decimal, value.real, config):
                    return Outcome(True, "approx_equal", "numeric")
        tolerance = approximation_tolerance(reference, candidate, config)
        if tolerance and difference <= tolerance * scale:
            return Outcome(True, "approx_equal", "numeric")
        if has_float_printout(reference) or allowed and has_float_printout(candidate):
            if difference <= config.rel_tol * scale:
                return Outcome(True, "numeric_equal", "numeric")
    return Outcome(False, "symbolic_mismatch", "symbolic")


def _exact_rationals(a: sympy.Basic, b: sympy.Basic) -> tuple[Number, Number] | None:
    """Both constants as exact numbers when they are made of rationals only (`2 \\cdot 10^{-50}`), else None."""
    if has_irrational(a) or has_irrational(b) or a.has(sympy.I) or b.has(sympy.I):
        return None
    try:
        x, y = a.doit(), b.doit()
    except MemoryError:
        raise
    except Exception:  # an odd object (unevaluated sum, relation) is left to numeric evaluation
        return None
    if not (isinstance(x, sympy.Rational) and isinstance(y, sympy.Rational)):
        return None
    return as_number(x), as_number(y)


def _same_constant(a_expr: sympy.Basic, b_expr: sympy.Basic, a: mpmath.mpc, b: mpmath.mpc, digits: int) -> bool:
    """Tell whether two evaluated constants are the same number, relative to their size.

    Two nonzero values must agree to `_CONSTANT_TOLERANCE` relative to the
    larger, however small both are. A difference below that tolerance in
    absolute terms may also be the rounding residue of an exact zero
    (`\\sin\\pi`, `\\cos\\frac{\\pi}{7} + \\cos\\frac{3\\pi}{7} + \\cos\\frac{5\\pi}{7} - \\frac{1}{2}`
    against 0): SymPy's `equals(0)` then decides (numeric evaluation with
    precision tracking, then algebraic tests); a true tiny value (`e^{-200}`)
    is not zero.
    """
    difference = abs(a - b)
    if difference == 0:
        return True
    if a != 0 and b != 0 and difference <= _CONSTANT_TOLERANCE * max(abs(a), abs(b)):
        return True
    if difference > _CONSTANT_TOLERANCE:
        return False
    try:
        return (a_expr - b_expr).equals(0) is True
    except MemoryError:
        raise
    except Exception:  # SymPy raises many types on odd inputs; an undecided zero test is not equality
        return False

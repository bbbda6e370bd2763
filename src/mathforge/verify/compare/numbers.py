"""Numbers: exact values, decimals, rounding, and how far a decimal may stand for an exact value.

Guarantees: integers and rationals compare exactly as `Fraction`s, so two
distinct large integers never merge. Tolerance is a stated policy, not a
blanket `rel_tol`: machine-float printouts (12+ significant digits) get
`rel_tol`; a shorter decimal matches an exact value only as its rounding or
truncation (`approx_min_digits`), never a value it could have written exactly
(`5.001` is not `5`). Whether a decimal may stand for an exact irrational
(`1.414` for `\\sqrt{2}`) is the `approximate_constants` policy
(`effective_config`, `approximates_constants`).
"""

from __future__ import annotations

import math
from fractions import Fraction

import mpmath
import sympy

from mathforge.verify.compare.outcome import Outcome
from mathforge.verify.config import VerifyConfig
from mathforge.verify.values import FLOAT_PRINTOUT_DIGITS, Expression, Number

CONSTANT_DIGITS = 60
_IRRATIONAL_FUNCTIONS = (sympy.exp, sympy.log, sympy.sin, sympy.cos, sympy.tan, sympy.sec, sympy.csc, sympy.cot)


def effective_config(config: VerifyConfig, decimal_requested: bool | None) -> VerifyConfig:
    """Resolve 'when_asked' into 'always' or 'never' for one problem.

    `decimal_requested=None` means the caller does not know what the problem
    asks (a bare answer pair, as in the peer benchmarks): the decimal is then
    given the benefit of the doubt, as before the policy existed. Pipeline
    stages know the problem and pass True or False.
    """
    if config.approximate_constants != "when_asked":
        return config
    return config.model_copy(update={"approximate_constants": "never" if decimal_requested is False else "always"})


def approximates_constants(config: VerifyConfig) -> bool:
    """Whether a decimal may stand for an exact irrational under this (resolved) policy."""
    return config.approximate_constants != "never"


def compare_numbers(reference: Number, candidate: Number, config: VerifyConfig) -> Outcome:
    if reference.value == candidate.value:
        return Outcome(True, "numeric_equal", "numeric")
    rebased = _rebase(reference, candidate) or _rebase(candidate, reference)
    if rebased is not None:
        return Outcome(rebased, "numeric_equal" if rebased else "numeric_mismatch", "numeric")
    if _is_float_printout(reference) or _is_float_printout(candidate):
        if _within(reference.value, candidate.value, config.rel_tol):
            return Outcome(True, "numeric_equal", "numeric")
    for approximate, exact in ((candidate, reference), (reference, candidate)):
        if is_rounding(approximate, exact.value, config):
            return Outcome(True, "approx_equal", "numeric")
    return Outcome(False, "numeric_mismatch", "numeric")


def _rebase(based: Number, plain: Number) -> bool | None:
    """Read a plain digit string in the other side's base: `204` against `204_5`."""
    if based.base is None or plain.base is not None or not plain.digits or plain.places is not None:
        return None
    return based.digits == plain.digits


def _is_float_printout(number: Number) -> bool:
    return number.places is not None and number.places > 0 and number.sig >= FLOAT_PRINTOUT_DIGITS


def _within(a: Fraction, b: Fraction, rel_tol: float) -> bool:
    return abs(a - b) <= Fraction(rel_tol) * max(abs(a), abs(b))


def is_rounding(approximate: Number, exact: Fraction | mpmath.mpf, config: VerifyConfig) -> bool:
    r"""Tell whether a decimal is `exact` rounded or truncated to its last written digit.

    Refused below `approx_min_digits` significant digits, and when `exact` has
    a decimal expansion that short: the decimal then claims a different value
    (`5.001` is not `5`, `1.733` is not `\sqrt{3}`).
    """
    places = approximate.places
    if not places or config.approx_min_digits == 0 or approximate.sig < config.approx_min_digits:
        return False
    written = approximate.value * 10**places
    if isinstance(exact, Fraction):
        scaled = exact * 10**places
        if scaled.denominator == 1:
            return False
        truncated, nearest = int(scaled), {math.floor(scaled + Fraction(1, 2)), math.ceil(scaled - Fraction(1, 2))}
        return written in {truncated, *nearest}
    with mpmath.workdps(CONSTANT_DIGITS):
        scaled = exact * mpmath.mpf(10) ** places
        if scaled == mpmath.nint(scaled):
            return False
        truncated = int(mpmath.floor(scaled)) if scaled > 0 else int(mpmath.ceil(scaled))
        return written in {truncated, int(mpmath.nint(scaled))}


def plain_decimal(expression: Expression) -> Number | None:
    """The decimal number an expression consists of, if it is nothing else (`1.414`, `-0.25`)."""
    if len(expression.literals) != 1 or not expression.expr.is_Rational:
        return None
    places, sig, value = expression.literals[0]
    number = Fraction(int(expression.expr.p), int(expression.expr.q))
    return Number(number, places=places, sig=sig) if abs(number) == value else None


def as_number(rational: sympy.Rational) -> Number:
    return Number(Fraction(int(rational.p), int(rational.q)))


def has_irrational(expr: sympy.Basic) -> bool:
    if expr.has(sympy.pi, sympy.E, sympy.EulerGamma, sympy.GoldenRatio, *_IRRATIONAL_FUNCTIONS):
        return True
    return any(not power.exp.is_Integer for power in expr.atoms(sympy.Pow))


def has_float_printout(expression: Expression) -> bool:
    return any(sig >= FLOAT_PRINTOUT_DIGITS for _, sig, _ in expression.literals)


def _tolerance(approximate: Expression, exact: Expression, config: VerifyConfig) -> float:
    """Relative uncertainty of an expression written with decimals, against an exact one.

    Zero unless the approximate side has decimals of at least
    `approx_min_digits` significant digits and the exact side has no decimals
    but an irrational constant or function (what a decimal can only round).
    """
    if exact.literals or not has_irrational(exact.expr) or plain_decimal(approximate) is not None:
        return 0.0
    tolerance = 0.0
    for places, sig, value in approximate.literals:
        if sig >= FLOAT_PRINTOUT_DIGITS:
            tolerance = max(tolerance, config.rel_tol)
        elif config.approx_min_digits and sig >= config.approx_min_digits and value:
            tolerance = max(tolerance, float(Fraction(1, 10**places) / value))
    return tolerance


def approximation_tolerance(reference: Expression, candidate: Expression, config: VerifyConfig) -> float:
    """The larger tolerance of either side approximating the other; a decimal candidate only if the policy allows.

    The `approximate_constants` policy is about answers: a decimal reference
    (the problem asked for one) still accepts the exact value it rounds.
    """
    candidate_side = _tolerance(candidate, reference, config) if approximates_constants(config) else 0.0
    return max(candidate_side, _tolerance(reference, candidate, config))

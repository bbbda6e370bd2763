"""Expressions with free symbols, and the numeric evaluation every symbolic test relies on.

The order is what keeps the verifier fast: a bounded `expand(a - b) == 0`,
then numeric sampling at fixed pseudo-random points (30 digits), then
`simplify(a - b) == 0` only when sampling cannot evaluate (undefined
functions, symbolic sums). Sampling refutes cheaply and confirms reliably for
the elementary expressions answers are made of. Values are compared
relatively, never under an absolute floor. `proportional` (a = c * b for a
nonzero constant c) serves equations and multi-variable inequalities.
Every expensive step is bounded (operation counts, powers); what cannot be
decided is None, never a guess.
"""

from __future__ import annotations

import random

import mpmath
import sympy
from sympy.core.function import AppliedUndef

from mathforge.verify.compare.numbers import CONSTANT_DIGITS, approximation_tolerance
from mathforge.verify.compare.outcome import Outcome
from mathforge.verify.config import VerifyConfig
from mathforge.verify.values import Expression

_SAMPLE_DIGITS = 30
_SAMPLE_TOLERANCE = 1e-15


# Below this magnitude a sampled value is indistinguishable from a cancellation residue (30 digits).
_SAMPLE_FLOOR = 1e-25
_MAX_EXPAND_OPS = 60
_MAX_EXPAND_POWER = 12
_MAX_SIMPLIFY_OPS = 400


def evaluate(expr: sympy.Basic, subs: dict | None = None, digits: int = CONSTANT_DIGITS) -> mpmath.mpc | None:
    """Evaluate to a complex mpmath number, or None (not a number, infinite, or failing)."""
    try:
        value = expr.evalf(digits, subs=subs) if subs else expr.evalf(digits)
        if not value.is_number:
            return None
        real, imaginary = value.as_real_imag()
        real, imaginary = sympy.Float(real, digits), sympy.Float(imaginary, digits)
        if not (real.is_finite and imaginary.is_finite):
            return None
        bits = int(digits * 3.33) + 64
        with mpmath.workprec(bits):
            return mpmath.mpc(real._to_mpmath(bits), imaginary._to_mpmath(bits))
    except MemoryError:
        raise
    except Exception:  # SymPy raises many types on odd inputs; any failure means "cannot evaluate"
        return None


def compare_functions(reference: Expression, candidate: Expression, config: VerifyConfig) -> Outcome:
    difference = reference.expr - candidate.expr
    if difference == 0:
        return Outcome(True, "symbolic_equal", "symbolic")
    if sympy.count_ops(difference) <= _MAX_EXPAND_OPS and _max_power(difference) <= _MAX_EXPAND_POWER:
        try:
            if sympy.expand(difference) == 0:
                return Outcome(True, "symbolic_equal", "symbolic")
        except MemoryError:
            raise
        except Exception:  # expansion of odd objects (matrices inside, non-commutative) is optional
            pass
    tolerance = max(_SAMPLE_TOLERANCE, approximation_tolerance(reference, candidate, config))
    sampled = _sample_equal(reference.expr, candidate.expr, tolerance)
    if sampled is not None:
        return Outcome(sampled, "symbolic_equal" if sampled else "symbolic_mismatch", "symbolic")
    return simplify_outcome(difference)


def _max_power(expr: sympy.Basic) -> int:
    """Largest integer exponent in `expr`: expanding (x + 1)^{100000} would never finish."""
    exponents = [abs(int(power.exp)) for power in expr.atoms(sympy.Pow) if power.exp.is_Integer]
    return max(exponents, default=0)


def simplify_outcome(difference: sympy.Basic) -> Outcome:
    try:
        if sympy.count_ops(difference) > _MAX_SIMPLIFY_OPS:
            return Outcome(None, "too_complex", "symbolic")
        equal = sympy.simplify(difference) == 0
    except MemoryError:
        raise
    except Exception:  # simplify fails on some objects (relations, sets); undecidable, not wrong
        return Outcome(None, "unparsable", "symbolic")
    return Outcome(equal, "symbolic_equal" if equal else "symbolic_mismatch", "symbolic")


def _sample_points(symbols: list[sympy.Symbol], *, integers: bool = False) -> list[tuple[dict, bool]]:
    """Fixed pseudo-random points: four positive, one negative (flagged True).

    Sums and products with symbolic bounds are sampled at small integers,
    where they evaluate term by term.
    """
    rng = random.Random(20240601)
    points = []
    for index in range(5):
        if integers:
            point = {symbol: sympy.Integer(rng.randint(2, 12)) for symbol in symbols}
        else:
            sign = -1 if index == 4 else 1
            point = {symbol: sympy.Float(sign * rng.uniform(0.3, 2.7), _SAMPLE_DIGITS) for symbol in symbols}
        points.append((point, index == 4 and not integers))
    return points


def _samplable(expr: sympy.Basic) -> bool:
    return not expr.has(sympy.Derivative, sympy.Limit)


def _is_discrete(expr: sympy.Basic) -> bool:
    return expr.has(sympy.Sum, sympy.Product)


def _evaluate_at(expr: sympy.Basic, point: dict, discrete: bool) -> mpmath.mpc | None:
    if not discrete:
        return evaluate(expr, point, _SAMPLE_DIGITS)
    try:
        return evaluate(expr.xreplace(point).doit(), digits=_SAMPLE_DIGITS)
    except MemoryError:
        raise
    except Exception:  # a sum SymPy cannot expand is simply not sampled
        return None


def _opaque_functions(a: sympy.Basic, b: sympy.Basic) -> tuple[sympy.Basic, sympy.Basic]:
    """Replace each distinct application of an undefined function (f(x), f(y)) by its own symbol.

    Equal applications must take equal values, different ones need not: so
    `f(x)` matches `f(x)` and never `f(y)`, and both sides become samplable.
    """
    applications = sorted(a.atoms(AppliedUndef) | b.atoms(AppliedUndef), key=sympy.default_sort_key)
    if not applications:
        return a, b
    symbols = {application: sympy.Dummy(f"u{index}") for index, application in enumerate(applications)}
    return a.xreplace(symbols), b.xreplace(symbols)


def _sample_equal(a: sympy.Basic, b: sympy.Basic, tolerance: float) -> bool | None:
    """Compare two expressions at sample points: True, False, or None when they cannot be evaluated."""
    if not (_samplable(a) and _samplable(b)):
        return None
    a, b = _opaque_functions(a, b)
    symbols = sorted(a.free_symbols | b.free_symbols, key=lambda symbol: symbol.name)
    discrete = _is_discrete(a) or _is_discrete(b)
    valid = 0
    for point, is_negative in _sample_points(symbols, integers=discrete):
        x, y = _evaluate_at(a, point, discrete), _evaluate_at(b, point, discrete)
        if x is None or y is None:
            continue
        if is_negative and (abs(x.imag) > 1e-20 or abs(y.imag) > 1e-20):
            continue
        if not _close(x, y, tolerance):
            if max(abs(x), abs(y)) <= _SAMPLE_FLOOR:
                # Both sides vanish at this point to sampling precision: it neither confirms nor refutes.
                continue
            return False
        valid += not is_negative
    return True if valid >= 3 else None


def _close(x: mpmath.mpc, y: mpmath.mpc, tolerance: float) -> bool:
    """Relative closeness: values of any size are compared to their own magnitude."""
    difference = abs(x - y)
    return difference <= tolerance * max(abs(x), abs(y))


def proportional(a: sympy.Basic, b: sympy.Basic, *, positive_only: bool) -> Outcome:
    """Tell whether a = c * b for a nonzero constant c (c > 0 when `positive_only`)."""
    ratio = None
    valid = 0
    if _samplable(a) and _samplable(b):
        a, b = _opaque_functions(a, b)
        symbols = sorted(a.free_symbols | b.free_symbols, key=lambda symbol: symbol.name)
        discrete = _is_discrete(a) or _is_discrete(b)
        for point, is_negative in _sample_points(symbols, integers=discrete):
            x, y = _evaluate_at(a, point, discrete), _evaluate_at(b, point, discrete)
            if x is None or y is None or is_negative:
                continue
            if abs(y) < 1e-25:
                if abs(x) < 1e-25:
                    continue
                return Outcome(False, "equation_mismatch", "symbolic")
            current = x / y
            if ratio is None:
                ratio = current
            elif not _close(ratio, current, _SAMPLE_TOLERANCE):
                return Outcome(False, "equation_mismatch", "symbolic")
            valid += 1
    if ratio is not None and valid >= 3:
        equal = abs(ratio) > 1e-25 and (not positive_only or (abs(ratio.imag) < 1e-20 and ratio.real > 0))
        return Outcome(equal, "symbolic_equal" if equal else "equation_mismatch", "symbolic")
    try:
        quotient = sympy.simplify(a / b)
    except MemoryError:
        raise
    except Exception:  # undecidable rather than wrong
        return Outcome(None, "unparsable", "symbolic")
    equal = not quotient.free_symbols and quotient != 0 and (not positive_only or bool(quotient.is_positive))
    return Outcome(equal, "symbolic_equal" if equal else "equation_mismatch", "symbolic")

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
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

import mpmath
import sympy
from sympy.core.function import AppliedUndef

from mathforge.records import Verdict
from mathforge.verify.config import VerifyConfig
from mathforge.verify.guards import check_answer
from mathforge.verify.normalize import canonical_unit, clean_latex, is_text_answer
from mathforge.verify.parse import (
    Assign,
    Atom,
    Clock,
    Equation,
    Items,
    Matrix,
    Node,
    Relation,
    SetUnion,
    is_name,
    parse_answer,
)
from mathforge.verify.values import (
    FLOAT_PRINTOUT_DIGITS,
    Expression,
    Number,
    expression_value,
    number_value,
    words_value,
)

_DEFAULT = VerifyConfig()
_SAMPLE_DIGITS = 30
_SAMPLE_TOLERANCE = 1e-15
# Below this magnitude a sampled value is indistinguishable from a cancellation residue (30 digits).
_SAMPLE_FLOOR = 1e-25
_CONSTANT_DIGITS = 60
_CONSTANT_TOLERANCE = mpmath.mpf("1e-45")
_MAX_CONSTANT_DIGITS = 100_000
_MAX_EXPAND_OPS = 60
_MAX_EXPAND_POWER = 12
_MAX_SIMPLIFY_OPS = 400
_IRRATIONAL_FUNCTIONS = (sympy.exp, sympy.log, sympy.sin, sympy.cos, sympy.tan, sympy.sec, sympy.csc, sympy.cot)
_RELATIONS = {
    "<": sympy.StrictLessThan,
    ">": sympy.StrictGreaterThan,
    r"\le": sympy.LessThan,
    r"\ge": sympy.GreaterThan,
    r"\ne": sympy.Unequality,
}
_METHOD_RANK = {"string": 0, "text": 1, "numeric": 2, "structure": 2, "symbolic": 3}


@dataclass(frozen=True)
class Outcome:
    """Result of one comparison step: equal / not equal / undecidable, with why and how."""

    is_equal: bool | None
    reason: str
    method: str


def compare_answers(
    reference: str, candidate: str, config: VerifyConfig = _DEFAULT, *, decimal_requested: bool | None = None
) -> Verdict:
    r"""Compare an extracted candidate answer with the reference answer.

    Reference first: the relation is not symmetric (a candidate equation chain
    is read as its last value, a candidate decimal may approximate an exact
    reference). `Verdict.extracted` is the candidate as given.
    `decimal_requested` says whether the problem asks for a decimal (see
    `asks_for_decimal`); it matters only under `approximate_constants='when_asked'`.

    >>> compare_answers(r"\frac{1}{2}", "0.5").reason
    'numeric_equal'
    >>> compare_answers(r"x \in [-2, 7]", r"-2 \le x \le 7").is_correct
    True
    >>> compare_answers(r"\pm 2", "2").is_correct
    False
    """
    if not reference or not reference.strip():
        return Verdict(is_correct=None, reason="empty_reference", extracted=candidate, method="extraction")
    if not candidate or not candidate.strip():
        return Verdict(is_correct=None, reason="no_answer_found", extracted=candidate, method="extraction")
    for text in (reference, candidate):
        guard = check_answer(text, config)
        if guard is not None:
            return Verdict(is_correct=None, reason=guard, extracted=candidate, method="guard")
    config = effective_config(config, decimal_requested)
    clean_reference, clean_candidate = clean_latex(reference), clean_latex(candidate)
    if not clean_candidate:
        return Verdict(is_correct=None, reason="no_answer_found", extracted=candidate, method="extraction")
    if _squash(clean_reference) == _squash(clean_candidate):
        return Verdict(is_correct=True, reason="string_match", extracted=candidate, method="string")
    try:
        outcome = _compare_readings(_parsed(clean_reference), _parsed(clean_candidate), config)
    except RecursionError:
        outcome = Outcome(None, "too_complex", "symbolic")
    return Verdict(is_correct=outcome.is_equal, reason=outcome.reason, extracted=candidate, method=outcome.method)


@lru_cache(maxsize=50_000)
def _parsed(clean: str) -> tuple[Node, ...]:
    return parse_answer(clean)


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _compare_readings(references: tuple[Node, ...], candidates: tuple[Node, ...], config: VerifyConfig) -> Outcome:
    best: Outcome | None = None
    for reference in references:
        for candidate in candidates:
            outcome = compare_nodes(reference, candidate, config)
            if outcome.is_equal:
                return outcome
            if best is None or best.is_equal is None and outcome.is_equal is False:
                best = outcome
    assert best is not None
    return best


def compare_nodes(reference: Node, candidate: Node, config: VerifyConfig) -> Outcome:
    """Compare two parsed answers (reference first)."""
    if isinstance(reference, Assign) and isinstance(candidate, Assign):
        return compare_nodes(reference.value, candidate.value, config)
    if isinstance(reference, Equation) and isinstance(candidate, Assign) and isinstance(candidate.value, Atom):
        return _compare_equations(reference, Equation(Atom(candidate.name), candidate.value), config)
    if isinstance(candidate, Equation) and isinstance(reference, Assign) and isinstance(reference.value, Atom):
        return _compare_equations(Equation(Atom(reference.name), reference.value), candidate, config)
    if isinstance(candidate, Equation) and not isinstance(reference, Equation) and _is_constant(candidate.lhs):
        return compare_nodes(reference, candidate.rhs, config)
    if isinstance(reference, (Relation, SetUnion)) or isinstance(candidate, (Relation, SetUnion)):
        return _compare_regions(reference, candidate, config)
    if isinstance(reference, Assign):
        return compare_nodes(reference.value, candidate, config)
    if isinstance(candidate, Assign):
        return compare_nodes(reference, candidate.value, config)
    if isinstance(reference, Equation) and isinstance(candidate, Equation):
        return _compare_equations(reference, candidate, config)
    if isinstance(reference, Clock) and isinstance(candidate, Clock):
        equal = reference.seconds % 86400 == candidate.seconds % 86400
        return Outcome(equal, "numeric_equal" if equal else "numeric_mismatch", "numeric")
    if isinstance(reference, Atom) and isinstance(candidate, Atom):
        return compare_atoms(reference, candidate, config)
    if isinstance(reference, Items) and isinstance(candidate, Items):
        return _compare_items(reference, candidate, config)
    if isinstance(reference, (Matrix, Atom, Items)) and isinstance(candidate, (Matrix, Atom, Items)):
        return _compare_matrices(reference, candidate, config)
    return Outcome(False, "structure_mismatch", "structure")


def compare_atoms(reference: Atom, candidate: Atom, config: VerifyConfig) -> Outcome:
    """Compare two single values under the percent and unit policies."""
    if config.units == "match" and reference.unit and candidate.unit:
        if canonical_unit(reference.unit) != canonical_unit(candidate.unit):
            return Outcome(False, "unit_mismatch", "string")
    if _squash(reference.text) == _squash(candidate.text) and reference.percent == candidate.percent:
        return Outcome(True, "string_match", "string")
    reference_words, candidate_words = words_value(reference.text), words_value(candidate.text)
    if reference_words is not None and reference_words == candidate_words:
        return Outcome(True, "text_match", "text")
    if _is_explicit_text(reference.text) or _is_explicit_text(candidate.text):
        return Outcome(False, "text_mismatch", "text")
    if reference_words is not None and candidate_words is not None:
        if max(len(reference_words), len(candidate_words)) > 2:
            # Words, not products of one-letter variables: "odd" is not "dod".
            return Outcome(False, "text_mismatch", "text")
    reference_value, candidate_value = _value(reference.text), _value(candidate.text)
    if reference_value is None:
        return Outcome(None, "unparsable_reference", "symbolic")
    if candidate_value is None:
        if candidate_words is not None:
            return Outcome(False, "text_mismatch", "text")
        return Outcome(None, "unparsable", "symbolic")
    best: Outcome | None = None
    for reference_scale, candidate_scale in _percent_scales(reference.percent, candidate.percent, config):
        outcome = compare_values(
            _scaled(reference_value, reference_scale), _scaled(candidate_value, candidate_scale), config
        )
        if outcome.is_equal:
            return outcome
        best = best or outcome
    assert best is not None
    return best


def _is_explicit_text(text: str) -> bool:
    return text.startswith(r"\text{") and is_text_answer(text)


def _value(text: str) -> Number | Expression | None:
    return number_value(text) or expression_value(text)


def _percent_scales(
    reference_percent: bool, candidate_percent: bool, config: VerifyConfig
) -> list[tuple[Fraction, Fraction]]:
    one = Fraction(1)
    if reference_percent == candidate_percent:
        return [(one, one)]
    options = {"either": [Fraction(1, 100), one], "fraction": [Fraction(1, 100)], "number": [one]}[config.percent]
    return [(scale, one) if reference_percent else (one, scale) for scale in options]


def _scaled(value: Number | Expression, scale: Fraction) -> Number | Expression:
    if scale == 1:
        return value
    if isinstance(value, Number):
        places = None if value.places is None else value.places + 2
        return Number(value.value * scale, places=places, sig=value.sig)
    return Expression(value.expr * sympy.Rational(scale.numerator, scale.denominator), value.literals)


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


def _approximates_constants(config: VerifyConfig) -> bool:
    """Whether a decimal may stand for an exact irrational under this (resolved) policy."""
    return config.approximate_constants != "never"


def compare_values(reference: Number | Expression, candidate: Number | Expression, config: VerifyConfig) -> Outcome:
    """Compare two values: exact numbers without SymPy, everything else with it."""
    if isinstance(reference, Number) and isinstance(candidate, Number):
        return _compare_numbers(reference, candidate, config)
    return _compare_expressions(_as_expression(reference), _as_expression(candidate), config)


def _as_expression(value: Number | Expression) -> Expression:
    if isinstance(value, Expression):
        return value
    literal = ((value.places, value.sig, value.value),) if value.places is not None else ()
    return Expression(sympy.Rational(value.value.numerator, value.value.denominator), literal)


def _compare_numbers(reference: Number, candidate: Number, config: VerifyConfig) -> Outcome:
    if reference.value == candidate.value:
        return Outcome(True, "numeric_equal", "numeric")
    rebased = _rebase(reference, candidate) or _rebase(candidate, reference)
    if rebased is not None:
        return Outcome(rebased, "numeric_equal" if rebased else "numeric_mismatch", "numeric")
    if _is_float_printout(reference) or _is_float_printout(candidate):
        if _within(reference.value, candidate.value, config.rel_tol):
            return Outcome(True, "numeric_equal", "numeric")
    for approximate, exact in ((candidate, reference), (reference, candidate)):
        if _is_rounding(approximate, exact.value, config):
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


def _is_rounding(approximate: Number, exact: Fraction | mpmath.mpf, config: VerifyConfig) -> bool:
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
    with mpmath.workdps(_CONSTANT_DIGITS):
        scaled = exact * mpmath.mpf(10) ** places
        if scaled == mpmath.nint(scaled):
            return False
        truncated = int(mpmath.floor(scaled)) if scaled > 0 else int(mpmath.ceil(scaled))
        return written in {truncated, int(mpmath.nint(scaled))}


def _plain_decimal(expression: Expression) -> Number | None:
    """The decimal number an expression consists of, if it is nothing else (`1.414`, `-0.25`)."""
    if len(expression.literals) != 1 or not expression.expr.is_Rational:
        return None
    places, sig, value = expression.literals[0]
    number = Fraction(int(expression.expr.p), int(expression.expr.q))
    return Number(number, places=places, sig=sig) if abs(number) == value else None


def _compare_expressions(reference: Expression, candidate: Expression, config: VerifyConfig) -> Outcome:
    a, b = reference.expr, candidate.expr
    a_matrix, b_matrix = isinstance(a, sympy.MatrixBase), isinstance(b, sympy.MatrixBase)
    if a_matrix or b_matrix:
        if not (a_matrix and b_matrix) or a.shape != b.shape:
            return Outcome(False, "structure_mismatch", "structure")
        outcomes = []
        for x, y in zip(a, b):
            outcome = _compare_expressions(Expression(x, reference.literals), Expression(y, candidate.literals), config)
            if not outcome.is_equal:
                return outcome
            outcomes.append(outcome)
        return _combine(outcomes)
    if a == b:
        return Outcome(True, "symbolic_equal", "symbolic")
    if a.is_Rational and b.is_Rational:
        return _compare_numbers(_as_number(a), _as_number(b), config)
    if not (a.free_symbols or b.free_symbols):
        return _compare_constants(reference, candidate, config)
    return _compare_functions(reference, candidate, config)


def _as_number(rational: sympy.Rational) -> Number:
    return Number(Fraction(int(rational.p), int(rational.q)))


def _tolerance(approximate: Expression, exact: Expression, config: VerifyConfig) -> float:
    """Relative uncertainty of an expression written with decimals, against an exact one.

    Zero unless the approximate side has decimals of at least
    `approx_min_digits` significant digits and the exact side has no decimals
    but an irrational constant or function (what a decimal can only round).
    """
    if exact.literals or not _has_irrational(exact.expr) or _plain_decimal(approximate) is not None:
        return 0.0
    tolerance = 0.0
    for places, sig, value in approximate.literals:
        if sig >= FLOAT_PRINTOUT_DIGITS:
            tolerance = max(tolerance, config.rel_tol)
        elif config.approx_min_digits and sig >= config.approx_min_digits and value:
            tolerance = max(tolerance, float(Fraction(1, 10**places) / value))
    return tolerance


def _approximation_tolerance(reference: Expression, candidate: Expression, config: VerifyConfig) -> float:
    """The larger tolerance of either side approximating the other; a decimal candidate only if the policy allows.

    The `approximate_constants` policy is about answers: a decimal reference
    (the problem asked for one) still accepts the exact value it rounds.
    """
    candidate_side = _tolerance(candidate, reference, config) if _approximates_constants(config) else 0.0
    return max(candidate_side, _tolerance(reference, candidate, config))


def _has_irrational(expr: sympy.Basic) -> bool:
    if expr.has(sympy.pi, sympy.E, sympy.EulerGamma, sympy.GoldenRatio, *_IRRATIONAL_FUNCTIONS):
        return True
    return any(not power.exp.is_Integer for power in expr.atoms(sympy.Pow))


def _compare_constants(reference: Expression, candidate: Expression, config: VerifyConfig) -> Outcome:
    rationals = _exact_rationals(reference.expr, candidate.expr)
    if rationals is not None:
        return _compare_numbers(*rationals, config)
    a, b = _evaluate(reference.expr), _evaluate(candidate.expr)
    if a is None or b is None:
        return _simplify_outcome(reference.expr - candidate.expr)
    digits = _CONSTANT_DIGITS
    magnitude = int(mpmath.log10(max(abs(a), abs(b), 1)))
    if magnitude > 20:
        # Large values need digits down to the units place, or 10000! and 10000! + 1 would merge.
        digits += magnitude
        if digits > _MAX_CONSTANT_DIGITS:
            return Outcome(None, "too_complex", "symbolic")
        a, b = _evaluate(reference.expr, digits=digits), _evaluate(candidate.expr, digits=digits)
        if a is None or b is None:
            return _simplify_outcome(reference.expr - candidate.expr)
    with mpmath.workdps(digits):
        difference = abs(a - b)
        scale = max(abs(a), abs(b))
        if _same_constant(reference.expr, candidate.expr, a, b, digits) and (
            magnitude <= 20 or difference < mpmath.mpf("0.1")
        ):
            return Outcome(True, "symbolic_equal", "symbolic")
        allowed = _approximates_constants(config)
        for approximate, exact, value in ((candidate, reference, a), (reference, candidate, b)):
            if approximate is candidate and not allowed:
                continue
            decimal = _plain_decimal(approximate)
            if decimal is not None and not exact.literals and not value.imag:
                if _is_rounding(decimal, value.real, config):
                    return Outcome(True, "approx_equal", "numeric")
        tolerance = _approximation_tolerance(reference, candidate, config)
        if tolerance and difference <= tolerance * scale:
            return Outcome(True, "approx_equal", "numeric")
        if _has_float_printout(reference) or allowed and _has_float_printout(candidate):
            if difference <= config.rel_tol * scale:
                return Outcome(True, "numeric_equal", "numeric")
    return Outcome(False, "symbolic_mismatch", "symbolic")


def _exact_rationals(a: sympy.Basic, b: sympy.Basic) -> tuple[Number, Number] | None:
    """Both constants as exact numbers when they are made of rationals only (`2 \\cdot 10^{-50}`), else None."""
    if _has_irrational(a) or _has_irrational(b) or a.has(sympy.I) or b.has(sympy.I):
        return None
    try:
        x, y = a.doit(), b.doit()
    except MemoryError:
        raise
    except Exception:  # an odd object (unevaluated sum, relation) is left to numeric evaluation
        return None
    if not (isinstance(x, sympy.Rational) and isinstance(y, sympy.Rational)):
        return None
    return _as_number(x), _as_number(y)


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


def _has_float_printout(expression: Expression) -> bool:
    return any(sig >= FLOAT_PRINTOUT_DIGITS for _, sig, _ in expression.literals)


def _evaluate(expr: sympy.Basic, subs: dict | None = None, digits: int = _CONSTANT_DIGITS) -> mpmath.mpc | None:
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


def _compare_functions(reference: Expression, candidate: Expression, config: VerifyConfig) -> Outcome:
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
    tolerance = max(_SAMPLE_TOLERANCE, _approximation_tolerance(reference, candidate, config))
    sampled = _sample_equal(reference.expr, candidate.expr, tolerance)
    if sampled is not None:
        return Outcome(sampled, "symbolic_equal" if sampled else "symbolic_mismatch", "symbolic")
    return _simplify_outcome(difference)


def _max_power(expr: sympy.Basic) -> int:
    """Largest integer exponent in `expr`: expanding (x + 1)^{100000} would never finish."""
    exponents = [abs(int(power.exp)) for power in expr.atoms(sympy.Pow) if power.exp.is_Integer]
    return max(exponents, default=0)


def _simplify_outcome(difference: sympy.Basic) -> Outcome:
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
        return _evaluate(expr, point, _SAMPLE_DIGITS)
    try:
        return _evaluate(expr.xreplace(point).doit(), digits=_SAMPLE_DIGITS)
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


def _compare_equations(reference: Equation, candidate: Equation, config: VerifyConfig) -> Outcome:
    if reference.lhs == candidate.lhs:
        return compare_nodes(reference.rhs, candidate.rhs, config)
    sides = [_node_expression(node) for node in (reference.lhs, reference.rhs, candidate.lhs, candidate.rhs)]
    if any(side is None for side in sides):
        return Outcome(None, "unparsable", "symbolic")
    reference_difference = sides[0] - sides[1]
    candidate_difference = sides[2] - sides[3]
    if not (reference_difference.free_symbols and candidate_difference.free_symbols):
        return compare_nodes(reference.rhs, candidate.rhs, config)
    return _proportional(reference_difference, candidate_difference, positive_only=False)


def _proportional(a: sympy.Basic, b: sympy.Basic, *, positive_only: bool) -> Outcome:
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


def _node_expression(node: Node) -> sympy.Basic | None:
    if not isinstance(node, Atom):
        return None
    value = _value(node.text)
    if value is None:
        return None
    expression = _as_expression(value).expr
    return None if isinstance(expression, sympy.MatrixBase) else expression


def _is_constant(node: Node) -> bool:
    expression = _node_expression(node)
    return expression is not None and not expression.free_symbols


def _compare_items(reference: Items, candidate: Items, config: VerifyConfig) -> Outcome:
    if reference.kind == "mapping" and candidate.kind == "mapping" and set(reference.names) == set(candidate.names):
        order = {name: index for index, name in enumerate(candidate.names)}
        reordered = tuple(candidate.items[order[name]] for name in reference.names)
        return _ordered(reference.items, reordered, config)
    kinds = {reference.kind, candidate.kind}
    if kinds & {"list", "set"} and (_is_interval(reference) or _is_interval(candidate)):
        return Outcome(False, "interval_mismatch", "structure")
    if reference.kind == "tuple" and candidate.kind == "tuple":
        if len(reference.items) == 2 and reference.brackets != candidate.brackets:
            return Outcome(False, "interval_mismatch", "structure")
        return _ordered(reference.items, candidate.items, config)
    if kinds & {"tuple", "mapping", "ratio"}:
        return _ordered(reference.items, candidate.items, config)
    if kinds == {"list"} and config.list_order == "ordered":
        return _ordered(reference.items, candidate.items, config)
    return _unordered(reference.items, candidate.items, config)


def _is_interval(items: Items) -> bool:
    """A pair with a square bracket can only be an interval: `[2, 5]` is not the list `2, 5`."""
    return items.kind == "tuple" and len(items.items) == 2 and items.brackets != "()"


def _ordered(reference: tuple[Node, ...], candidate: tuple[Node, ...], config: VerifyConfig) -> Outcome:
    if len(reference) != len(candidate):
        return Outcome(False, "length_mismatch", "structure")
    outcomes = []
    for left, right in zip(reference, candidate):
        outcome = compare_nodes(left, right, config)
        if not outcome.is_equal:
            return outcome
        outcomes.append(outcome)
    return _combine(outcomes)


def _unordered(reference: tuple[Node, ...], candidate: tuple[Node, ...], config: VerifyConfig) -> Outcome:
    """Set equality: every reference item matches some candidate item and vice versa."""
    reference, candidate = tuple(dict.fromkeys(reference)), tuple(dict.fromkeys(candidate))
    matches: dict[tuple[int, int], Outcome] = {}

    def match(i: int, j: int) -> Outcome:
        if (i, j) not in matches:
            matches[(i, j)] = compare_nodes(reference[i], candidate[j], config)
        return matches[(i, j)]

    used = []
    for i in range(len(reference)):
        found = next((match(i, j) for j in range(len(candidate)) if match(i, j).is_equal), None)
        if found is None:
            return Outcome(False, "set_mismatch", "structure")
        used.append(found)
    for j in range(len(candidate)):
        if not any(match(i, j).is_equal for i in range(len(reference))):
            return Outcome(False, "set_mismatch", "structure")
    return _combine(used)


def _compare_matrices(reference: Node, candidate: Node, config: VerifyConfig) -> Outcome:
    """Compare matrices, and vectors with tuples; anything else is a structure mismatch."""
    reference_cells, candidate_cells = _cells(reference), _cells(candidate)
    if reference_cells is None or candidate_cells is None:
        if isinstance(reference, Items) and len(reference.items) == 1:
            return compare_nodes(reference.items[0], candidate, config)
        if isinstance(candidate, Items) and len(candidate.items) == 1:
            return compare_nodes(reference, candidate.items[0], config)
        return Outcome(False, "structure_mismatch", "structure")
    reference_shape, reference_flat = reference_cells
    candidate_shape, candidate_flat = candidate_cells
    if reference_shape != candidate_shape and not (_is_vector(reference_shape) and _is_vector(candidate_shape)):
        return Outcome(False, "structure_mismatch", "structure")
    if len(reference_flat) != len(candidate_flat):
        return Outcome(False, "length_mismatch", "structure")
    outcomes = []
    for left, right in zip(reference_flat, candidate_flat):
        outcome = _compare_cell(left, right, config)
        if not outcome.is_equal:
            return outcome
        outcomes.append(outcome)
    return _combine(outcomes)


def _is_vector(shape: tuple[int, int] | None) -> bool:
    return shape is None or 1 in shape


def _cells(node: Node) -> tuple[tuple[int, int] | None, list] | None:
    """Shape and flat cells of a matrix-like node; a tuple is a vector of unknown orientation."""
    if isinstance(node, Matrix):
        widths = {len(row) for row in node.rows}
        if len(widths) != 1:
            return None
        return (len(node.rows), widths.pop()), [cell for row in node.rows for cell in row]
    if isinstance(node, Items) and node.kind in {"tuple", "list"}:
        return None, list(node.items)
    if isinstance(node, Atom):
        value = expression_value(node.text) if number_value(node.text) is None else None
        if value is not None and isinstance(value.expr, sympy.MatrixBase):
            return value.expr.shape, [Expression(cell, value.literals) for cell in value.expr]
    return None


def _compare_cell(left: Node | Expression, right: Node | Expression, config: VerifyConfig) -> Outcome:
    if isinstance(left, Expression) or isinstance(right, Expression):
        left_value = left if isinstance(left, Expression) else _atom_expression(left)
        right_value = right if isinstance(right, Expression) else _atom_expression(right)
        if left_value is None or right_value is None:
            return Outcome(None, "unparsable", "symbolic")
        return compare_values(left_value, right_value, config)
    return compare_nodes(left, right, config)


def _atom_expression(node: Node) -> Expression | None:
    if not isinstance(node, Atom):
        return None
    value = _value(node.text)
    return None if value is None else _as_expression(value)


def _combine(outcomes: list[Outcome]) -> Outcome:
    """Summarize equal parts by the most expensive method that decided one of them."""
    if not outcomes:
        return Outcome(True, "string_match", "string")
    return max(outcomes, key=lambda outcome: _METHOD_RANK.get(outcome.method, 0))


Interval = tuple[sympy.Basic, sympy.Basic, bool, bool]


def _compare_regions(reference: Node, candidate: Node, config: VerifyConfig) -> Outcome:
    """Compare answers that denote sets of reals: inequalities, intervals, unions."""
    if isinstance(reference, Relation) and isinstance(candidate, Relation):
        same = reference.parts == candidate.parts and reference.ops == candidate.ops
        if same:
            return Outcome(True, "string_match", "string")
    reference_region, candidate_region = _region(reference), _region(candidate)
    if reference_region is not None and candidate_region is not None:
        return _compare_interval_lists(reference_region, candidate_region, config)
    if isinstance(reference, Relation) and isinstance(candidate, Relation):
        return _compare_relations(reference, candidate)
    if reference_region is None and isinstance(reference, (Relation, SetUnion)):
        return Outcome(None, "unparsable_reference", "symbolic")
    return Outcome(False, "structure_mismatch", "structure")


def _region(node: Node) -> list[Interval] | None:
    """Read a node as a finite union of real intervals (points are closed degenerate intervals)."""
    if isinstance(node, Assign):
        return _region(node.value)
    if isinstance(node, SetUnion):
        intervals: list[Interval] = []
        for part in node.parts:
            region = _region(part)
            if region is None:
                return None
            intervals.extend(region)
        return _sorted_intervals(intervals)
    if isinstance(node, Items) and node.kind == "tuple" and len(node.items) == 2 and len(node.brackets) == 2:
        ends = [_node_expression(item) for item in node.items]
        if any(end is None or end.free_symbols for end in ends):
            return None
        return [(ends[0], ends[1], node.brackets[0] == "[", node.brackets[1] == "]")]
    if isinstance(node, Items) and node.kind == "set" and node.brackets == "{}":
        points = [_node_expression(item) for item in node.items]
        if any(point is None or point.free_symbols for point in points):
            return None
        return _sorted_intervals([(point, point, True, True) for point in points])
    if isinstance(node, Relation):
        return _relation_region(node)
    return None


@lru_cache(maxsize=10_000)
def _relation_region(relation: Relation) -> list[Interval] | None:
    """Solve a one-variable inequality chain over the reals (a name like f(x) counts as the variable)."""
    variable = sympy.Dummy("v", real=True)
    expressions = []
    variables = set()
    for part in relation.parts:
        value = _node_expression(Atom(part))
        if value is None and not is_name(part):
            return None
        if is_name(part) and (value is None or value.is_Symbol or isinstance(value, AppliedUndef)):
            expressions.append(variable)
            variables.add(re.sub(r"\s", "", part))
        else:
            expressions.append(value)
    free = set().union(*(expression.free_symbols for expression in expressions)) - {variable}
    if variables and free or len(variables) > 1 or not variables and len(free) != 1:
        return None
    if not variables:
        symbol = free.pop()
        expressions = [expression.xreplace({symbol: variable}) for expression in expressions]
    solution = sympy.Reals
    try:
        for left, op, right in zip(expressions, relation.ops, expressions[1:]):
            solution = solution.intersect(_solve_link(left, op, right, variable))
    except MemoryError:
        raise
    except Exception:  # solveset raises NotImplementedError and others on hard inequalities
        return None
    return _set_intervals(solution)


def _solve_link(left: sympy.Basic, op: str, right: sympy.Basic, variable: sympy.Dummy) -> sympy.Set:
    """Solve one link `left op right` for `variable`; linear links need no solver."""
    linear = sympy.Poly(left - right, variable) if (left - right).is_polynomial(variable) else None
    if linear is not None and linear.degree() == 1 and not linear.LC().free_symbols and linear.LC().is_real:
        # slope * variable + offset  op  0
        slope, offset = linear.all_coeffs()
        bound = -offset / slope
        if slope < 0:
            op = {"<": ">", ">": "<", r"\le": r"\ge", r"\ge": r"\le"}.get(op, op)
        if op == r"\ne":
            return sympy.Union(sympy.Interval.open(-sympy.oo, bound), sympy.Interval.open(bound, sympy.oo))
        if op in ("<", r"\le"):
            return sympy.Interval(-sympy.oo, bound, right_open=op == "<")
        return sympy.Interval(bound, sympy.oo, left_open=op == ">")
    return sympy.solveset(_RELATIONS[op](left, right), variable, sympy.Reals)


def _set_intervals(solution: sympy.Set) -> list[Interval] | None:
    if solution.is_empty:
        return []
    if isinstance(solution, sympy.Interval):
        return [(solution.start, solution.end, not solution.left_open, not solution.right_open)]
    if isinstance(solution, sympy.FiniteSet):
        return _sorted_intervals([(point, point, True, True) for point in solution])
    if isinstance(solution, sympy.Union):
        intervals: list[Interval] = []
        for part in solution.args:
            region = _set_intervals(part)
            if region is None:
                return None
            intervals.extend(region)
        return _sorted_intervals(intervals)
    if isinstance(solution, sympy.Complement) and solution.args[0] == sympy.Reals:
        return _set_intervals(sympy.Interval(-sympy.oo, sympy.oo) - solution.args[1])
    return None


def _sorted_intervals(intervals: list[Interval]) -> list[Interval] | None:
    keys = []
    for interval in intervals:
        start = _evaluate(interval[0], digits=20)
        if start is None and interval[0] not in (sympy.oo, -sympy.oo):
            return None
        if interval[0] in (sympy.oo, -sympy.oo):
            keys.append(float(interval[0]))
        else:
            keys.append(float(start.real))
    return [interval for _, interval in sorted(zip(keys, intervals), key=lambda pair: pair[0])]


def _compare_interval_lists(reference: list[Interval], candidate: list[Interval], config: VerifyConfig) -> Outcome:
    if len(reference) != len(candidate):
        return Outcome(False, "interval_mismatch", "structure")
    outcomes = []
    for (a_start, a_end, a_left, a_right), (b_start, b_end, b_left, b_right) in zip(reference, candidate):
        # Closedness at an infinite end means nothing: [1, \infty] is [1, \infty).
        left_differs = a_left != b_left and a_start.is_finite is not False
        right_differs = a_right != b_right and a_end.is_finite is not False
        if left_differs or right_differs:
            return Outcome(False, "interval_mismatch", "structure")
        for left, right in ((a_start, b_start), (a_end, b_end)):
            if left.is_infinite or right.is_infinite:
                if left != right:
                    return Outcome(False, "interval_mismatch", "structure")
                continue
            outcome = _compare_expressions(Expression(left), Expression(right), config)
            if not outcome.is_equal:
                return outcome
            outcomes.append(outcome)
    return _combine(outcomes) if outcomes else Outcome(True, "symbolic_equal", "symbolic")


def _compare_relations(reference: Relation, candidate: Relation) -> Outcome:
    """Compare multi-variable inequalities as `expression < 0` forms up to a positive factor."""
    reference_forms, candidate_forms = _relation_forms(reference), _relation_forms(candidate)
    if reference_forms is None or candidate_forms is None:
        return Outcome(None, "unparsable", "symbolic")
    if len(reference_forms) != len(candidate_forms):
        return Outcome(False, "relation_mismatch", "symbolic")
    for (reference_expression, reference_op), (candidate_expression, candidate_op) in zip(
        reference_forms, candidate_forms
    ):
        if reference_op != candidate_op:
            return Outcome(False, "relation_mismatch", "symbolic")
        outcome = _proportional(reference_expression, candidate_expression, positive_only=reference_op != r"\ne")
        if not outcome.is_equal:
            reason = "relation_mismatch" if outcome.is_equal is False else outcome.reason
            return Outcome(outcome.is_equal, reason, "symbolic")
    return Outcome(True, "symbolic_equal", "symbolic")


def _relation_forms(relation: Relation) -> list[tuple[sympy.Basic, str]] | None:
    """Each link of a chain as (expression, op) meaning `expression op 0`, op in <, \\le, \\ne."""
    values = [_node_expression(Atom(part)) for part in relation.parts]
    if any(value is None for value in values):
        return None
    forms = []
    for left, op, right in zip(values, relation.ops, values[1:]):
        if op in ("<", r"\le"):
            forms.append((left - right, op))
        elif op in (">", r"\ge"):
            forms.append((right - left, "<" if op == ">" else r"\le"))
        else:
            forms.append((left - right, r"\ne"))
    return forms

"""One value against another: exact numbers without SymPy, everything else by kind (`compare_values`).

Dispatches to `numbers` (two rationals), `constants` (no free symbols) or
`symbolic` (free symbols); matrices compare cell by cell. Also reads an
answer's text as a value (`answer_value`) or as a SymPy expression
(`node_expression`), for the modules that compare structures of values.
"""

from __future__ import annotations

import sympy

from mathforge.verify.compare.constants import compare_constants
from mathforge.verify.compare.numbers import as_number, compare_numbers
from mathforge.verify.compare.outcome import Outcome, combine
from mathforge.verify.compare.symbolic import compare_functions
from mathforge.verify.config import VerifyConfig
from mathforge.verify.parse import Atom, Node
from mathforge.verify.values import Expression, Number, expression_value, number_value


def compare_values(reference: Number | Expression, candidate: Number | Expression, config: VerifyConfig) -> Outcome:
    """Compare two values: exact numbers without SymPy, everything else with it."""
    if isinstance(reference, Number) and isinstance(candidate, Number):
        return compare_numbers(reference, candidate, config)
    return compare_expressions(as_expression(reference), as_expression(candidate), config)


def as_expression(value: Number | Expression) -> Expression:
    if isinstance(value, Expression):
        return value
    literal = ((value.places, value.sig, value.value),) if value.places is not None else ()
    return Expression(sympy.Rational(value.value.numerator, value.value.denominator), literal)


def compare_expressions(reference: Expression, candidate: Expression, config: VerifyConfig) -> Outcome:
    a, b = reference.expr, candidate.expr
    a_matrix, b_matrix = isinstance(a, sympy.MatrixBase), isinstance(b, sympy.MatrixBase)
    if a_matrix or b_matrix:
        if not (a_matrix and b_matrix) or a.shape != b.shape:
            return Outcome(False, "structure_mismatch", "structure")
        outcomes = []
        for x, y in zip(a, b):
            outcome = compare_expressions(Expression(x, reference.literals), Expression(y, candidate.literals), config)
            if not outcome.is_equal:
                return outcome
            outcomes.append(outcome)
        return combine(outcomes)
    if a == b:
        return Outcome(True, "symbolic_equal", "symbolic")
    if a.is_Rational and b.is_Rational:
        return compare_numbers(as_number(a), as_number(b), config)
    if not (a.free_symbols or b.free_symbols):
        return compare_constants(reference, candidate, config)
    return compare_functions(reference, candidate, config)


def answer_value(text: str) -> Number | Expression | None:
    return number_value(text) or expression_value(text)


def node_expression(node: Node) -> sympy.Basic | None:
    if not isinstance(node, Atom):
        return None
    value = answer_value(node.text)
    if value is None:
        return None
    expression = as_expression(value).expr
    return None if isinstance(expression, sympy.MatrixBase) else expression

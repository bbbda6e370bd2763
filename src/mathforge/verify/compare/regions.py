"""Sets of reals: inequalities, intervals and unions of them (`compare_regions`).

Guarantees: both sides are read as finite unions of real intervals and
compared as sets, so `x \\in [-2, 7]` equals `-2 \\le x \\le 7`; the
closedness of an infinite end is ignored; a one-variable chain is solved over
the reals (linear links without a solver). Inequalities in several variables
compare link by link as `expression < 0` up to a positive constant factor.
"""

from __future__ import annotations

import re
from functools import lru_cache

import sympy
from sympy.core.function import AppliedUndef

from mathforge.verify.compare.expressions import compare_expressions, node_expression
from mathforge.verify.compare.outcome import Outcome, combine
from mathforge.verify.compare.symbolic import evaluate, proportional
from mathforge.verify.config import VerifyConfig
from mathforge.verify.parse import Assign, Atom, Items, Node, Relation, SetUnion, is_name
from mathforge.verify.values import Expression

_RELATIONS = {
    "<": sympy.StrictLessThan,
    ">": sympy.StrictGreaterThan,
    r"\le": sympy.LessThan,
    r"\ge": sympy.GreaterThan,
    r"\ne": sympy.Unequality,
}
Interval = tuple[sympy.Basic, sympy.Basic, bool, bool]


def compare_regions(reference: Node, candidate: Node, config: VerifyConfig) -> Outcome:
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
        ends = [node_expression(item) for item in node.items]
        if any(end is None or end.free_symbols for end in ends):
            return None
        return [(ends[0], ends[1], node.brackets[0] == "[", node.brackets[1] == "]")]
    if isinstance(node, Items) and node.kind == "set" and node.brackets == "{}":
        points = [node_expression(item) for item in node.items]
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
        value = node_expression(Atom(part))
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
        start = evaluate(interval[0], digits=20)
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
            outcome = compare_expressions(Expression(left), Expression(right), config)
            if not outcome.is_equal:
                return outcome
            outcomes.append(outcome)
    return combine(outcomes) if outcomes else Outcome(True, "symbolic_equal", "symbolic")


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
        outcome = proportional(reference_expression, candidate_expression, positive_only=reference_op != r"\ne")
        if not outcome.is_equal:
            reason = "relation_mismatch" if outcome.is_equal is False else outcome.reason
            return Outcome(outcome.is_equal, reason, "symbolic")
    return Outcome(True, "symbolic_equal", "symbolic")


def _relation_forms(relation: Relation) -> list[tuple[sympy.Basic, str]] | None:
    """Each link of a chain as (expression, op) meaning `expression op 0`, op in <, \\le, \\ne."""
    values = [node_expression(Atom(part)) for part in relation.parts]
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

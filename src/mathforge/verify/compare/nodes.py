"""Parsed answers by kind (`compare_nodes`), and the kinds built of other answers.

`compare_nodes` sends each pair of parsed answers to its comparison: atoms,
clock times, regions (sets of reals), equations, tuples / lists / sets /
mappings, matrices. The last three compare their parts with `compare_nodes`
again, which is why they live here with it. Guarantees: equations compare as
equations (same left side: the right sides; otherwise `(l1 - r1) / (l2 - r2)`
must be a nonzero constant, so `y = 2x + 3` equals `2x - y + 3 = 0`); tuples
and ordered lists compare in order, sets and lists in any order; a pair with
a square bracket is an interval, never a list; a vector equals a tuple of the
same cells.
"""

from __future__ import annotations

import sympy

from mathforge.verify.compare.atoms import compare_atoms
from mathforge.verify.compare.expressions import answer_value, as_expression, compare_values, node_expression
from mathforge.verify.compare.outcome import Outcome, combine
from mathforge.verify.compare.regions import compare_regions
from mathforge.verify.compare.symbolic import proportional
from mathforge.verify.config import VerifyConfig
from mathforge.verify.parse import Assign, Atom, Clock, Equation, Items, Matrix, Node, Relation, SetUnion
from mathforge.verify.values import Expression, expression_value, number_value


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
        return compare_regions(reference, candidate, config)
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


def _compare_equations(reference: Equation, candidate: Equation, config: VerifyConfig) -> Outcome:
    if reference.lhs == candidate.lhs:
        return compare_nodes(reference.rhs, candidate.rhs, config)
    sides = [node_expression(node) for node in (reference.lhs, reference.rhs, candidate.lhs, candidate.rhs)]
    if any(side is None for side in sides):
        return Outcome(None, "unparsable", "symbolic")
    reference_difference = sides[0] - sides[1]
    candidate_difference = sides[2] - sides[3]
    if not (reference_difference.free_symbols and candidate_difference.free_symbols):
        return compare_nodes(reference.rhs, candidate.rhs, config)
    return proportional(reference_difference, candidate_difference, positive_only=False)


def _is_constant(node: Node) -> bool:
    expression = node_expression(node)
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
    return combine(outcomes)


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
    return combine(used)


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
    return combine(outcomes)


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
    value = answer_value(node.text)
    return None if value is None else as_expression(value)

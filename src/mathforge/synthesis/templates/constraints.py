"""The safe evaluator of template constraints (`Constraint`).

Constraints come from an LLM. They are evaluated in-process, on every draw of
rejection sampling (thousands per template), where a sandbox round trip per
draw would dominate the stage. Guarantee: an expression is accepted only when
every node of its AST is on a whitelist (slot names, numeric literals,
arithmetic, comparisons, and/or/not) and is evaluated by walking that AST with
exact arithmetic, never with `eval`. No calls, attributes, subscripts or other
names exist to escape through; the one remaining cost, huge powers, is closed
by allowing `**` only with a small literal exponent.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Mapping

from mathforge.synthesis.templates.slots import Number, TemplateError


_MAX_EXPONENT = 6
_BINARY = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: Fraction(a) / Fraction(b),
    ast.FloorDiv: lambda a, b: a // b,
    ast.Mod: lambda a, b: a % b,
    ast.Pow: lambda a, b: a**b,
}
_COMPARE = {
    ast.Eq: lambda a, b: a == b,
    ast.NotEq: lambda a, b: a != b,
    ast.Lt: lambda a, b: a < b,
    ast.LtE: lambda a, b: a <= b,
    ast.Gt: lambda a, b: a > b,
    ast.GtE: lambda a, b: a >= b,
}


@dataclass(frozen=True)
class Constraint:
    """A boolean expression over slot names, checked against a whitelist once and evaluated without `eval`.

    >>> Constraint.compile("a > b and (a + b) % 3 == 0", {"a", "b"}).holds({"a": 5, "b": 1})
    True
    """

    expression: str
    tree: ast.expr

    @classmethod
    def compile(cls, expression: str, names: set[str]) -> Constraint:
        """Parse `expression`; raise TemplateError('invalid_constraint') on anything outside the whitelist."""
        try:
            tree = ast.parse(expression.strip(), mode="eval").body
        except SyntaxError as error:
            raise TemplateError("invalid_constraint", f"{expression!r}: {error.msg}") from None
        for node in ast.walk(tree):
            problem = _constraint_node_problem(node, names)
            if problem:
                raise TemplateError("invalid_constraint", f"{expression!r}: {problem}")
        return cls(expression=expression, tree=tree)

    def holds(self, values: Mapping[str, Number]) -> bool:
        """Evaluate with exact arithmetic (Fraction division); division by zero makes it false."""
        try:
            return bool(_evaluate(self.tree, values))
        except ZeroDivisionError:
            return False


def _constraint_node_problem(node: ast.AST, names: set[str]) -> str | None:
    if isinstance(node, ast.Name):
        return None if node.id in names else f"unknown name {node.id!r}"
    if isinstance(node, ast.Constant):
        is_number = isinstance(node.value, (int, float)) and not isinstance(node.value, bool)
        return None if is_number else f"literal {node.value!r} is not a number"
    if isinstance(node, ast.BinOp):
        if type(node.op) not in _BINARY:
            return f"operator {type(node.op).__name__} is not allowed"
        if isinstance(node.op, ast.Pow):
            exponent = node.right
            if not (
                isinstance(exponent, ast.Constant)
                and isinstance(exponent.value, int)
                and abs(exponent.value) <= _MAX_EXPONENT
            ):
                return f"'**' needs a literal integer exponent of at most {_MAX_EXPONENT}"
        return None
    if isinstance(node, ast.Compare):
        bad = [type(op).__name__ for op in node.ops if type(op) not in _COMPARE]
        return f"comparison {bad[0]} is not allowed" if bad else None
    allowed = (ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.UAdd, ast.Load, *_BINARY, *_COMPARE)
    return None if isinstance(node, allowed) else f"{type(node).__name__} is not allowed"


def _evaluate(node: ast.expr, values: Mapping[str, Number]) -> Any:
    if isinstance(node, ast.Name):
        return values[node.id]
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.BinOp):
        return _BINARY[type(node.op)](_evaluate(node.left, values), _evaluate(node.right, values))
    if isinstance(node, ast.UnaryOp):
        operand = _evaluate(node.operand, values)
        return (
            not operand if isinstance(node.op, ast.Not) else (-operand if isinstance(node.op, ast.USub) else +operand)
        )
    if isinstance(node, ast.BoolOp):
        if isinstance(node.op, ast.And):
            return all(_evaluate(value, values) for value in node.values)
        return any(_evaluate(value, values) for value in node.values)
    left = _evaluate(node.left, values)
    for op, right_node in zip(node.ops, node.comparators, strict=True):
        right = _evaluate(right_node, values)
        if not _COMPARE[type(op)](left, right):
            return False
        left = right
    return True

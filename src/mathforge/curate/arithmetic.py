r"""Find false arithmetic in a response's prose: "7 + 50 = 12", "80 - 14 = 58".

A rejection-sampled row is kept because its *final answer* verifies; nothing
checks its steps, and a small model often reaches the right number through
false equations. Trained on, such a row teaches that 7 + 50 = 12. This module
recomputes every equation that is arithmetic on plain numbers and reports the
ones that do not hold. It is the arithmetic half of a process check
(calculator annotations in GSM8K, Cobbe et al. 2021, are the same idea at
generation time); it cannot judge steps with words or symbols in them.

What is checked, after LaTeX is read as plain arithmetic (``\times``,
``\cdot``, ``×`` and an ``x`` between numbers -> ``*``; ``\div``, ``÷`` ->
``/``; ``\frac{a}{b}`` with numeric a, b -> ``(a/b)``; ``$`` dropped;
thousands separators removed) and code blocks are removed (their numbers are
the program's, not claims):

- an *equation chain* is a run of numbers, ``+ - * /``, parentheses, ``=``
  and unit words ("120 blisters + 80 blisters = 200") on one line, with at
  least one operator; each ``=`` joins two parts and both must evaluate
  (exact rational arithmetic, Python's grammar, "8(100)" as a product);
- a chain is skipped, not judged, when it may be part of a larger expression:
  it follows an operator, ``^``, ``)``, ``}``, "x", "per", "2/3 of" and the
  like ("x - 3 + 4 = 5" does not claim 3 + 4 = 5), a letter or a decimal
  point is glued to its first number, or its last number is followed by a
  letter, ``%``, ``^``, ``!`` or ``_`` ("= 12x", "= 40%");
- a chain is skipped when its units say it converts ("2 hours = 120 minutes",
  "4 pounds - 6 ounces = 58 ounces"): see `_units_agree`;
- a chain that opens with a plain number is judged from its second link on
  ("15% of 80 = (15/100)*80 = 12");
- running totals are read as their writer meant: in "5 + 3 = 8 - 2 = 6" the
  part "8 - 2" starts with the value before it and is not claimed equal to 8;
  "25 / 1/3 = 75" is read as 25 / (1/3) as well as (25 / 1) / 3;
- a part that is a plain number may be rounded when the other side is not a
  whole number: "10 / 3 = 3.33" and "10 / 4 = 2" hold (the difference is below
  one unit of the last written digit), "2.5 * 4 = 10.5" and "3 + 4 = 8" do not.

Everything it cannot read it leaves alone, so it errs towards keeping rows:
benchmarks/arithmetic_check.py measures both the false flags on human-written
solutions and the share of planted errors it finds.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from fractions import Fraction

#: A fenced code block, or an unclosed one running to the end of the text.
CODE_BLOCK = re.compile(r"```.*?(?:```|$)", re.DOTALL)
_FRAC = re.compile(r"\\[dt]?frac\s*\{\s*(\d+(?:\.\d+)?)\s*\}\s*\{\s*(\d+(?:\.\d+)?)\s*\}")
# "x" between numbers, or between a unit and a number ("60 students x 2/3"), is a times sign.
_TIMES = re.compile(r"\\times|\\cdot|[×·∗]|(?<=[\d)])\s*[xX]\s*(?=[\d(])|(?<=[a-z])\s+[xX]\s+(?=[\d(])")
_DIVIDE = re.compile(r"\\div|÷")
_MINUS = re.compile(r"[−–]")
_DROPPED = re.compile(r"\\left|\\right|\\[()\[\]]|\\?\$|\\[,;!]")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))|(?<=\d)\{,\}(?=\d{3}(?!\d))")
# One line of numbers, operators, parentheses, '=' and blanks; a period belongs to it only before a
# digit, so "= 7. Then" ends the chain at 7. A word between a number and an operator is a unit
# ("120 blisters + 80 blisters = 200 blisters", "2*28cm"); one letter is a variable ("3x + 2").
_CHAIN = re.compile(r"[\d(](?:(?<=\d)[ \t]*[a-z]{2,}(?=[ \t]*[-+*/=])|[\d()+\-*/= \t]|\.(?=\d))*")
_WORD = re.compile(r"[a-z]+")
_UNIT = re.compile(r"[ \t]*[a-z]+")
_UNIT_BEFORE_RESULT = re.compile(r"[a-z][ \t]*=[^=]*\Z")
_WORD_AFTER = re.compile(r"[ \t]*([a-z]+)")
_SUM = re.compile(r"[\d)][ \t]*[-+]")
_NOT_UNITS = frozenset(
    "because so and or then is are was were which that but to of for with by per plus minus times equals than from "
    "in on at each".split()
)
_GLUED_BEFORE = re.compile(r"(?:[\w.,√]|\d:)\Z")
# Words that make the chain the end of a longer expression: "60 students x 2/3 = 40" (x is a
# times sign), "2/3 of 30 + 6", "1 and 1/4 = 1.25", "divided by 4 + 1".
_OPERATOR_BEFORE = re.compile(
    r"(?:[-+*/^)}\]|<>%]|\b[xX]|(?:[\d%]|half|thirds?|quarters?|fourths?|fifths?|tenths?)\s+of|\d\s+and"
    r"|\b(?:divided|multiplied)\s+by|\b(?:plus|minus|times|over|per))\Z"
)
_LETTER_AFTER = re.compile(r"[^\W\d]")
_MARK_AFTER = re.compile(r"\s*(?:\.{2,}|…)?\s*(?:[%^!_]|\\%)")
_LITERAL = re.compile(r"\d+(?:\.(\d+))?|\.(\d+)")
_CONTEXT = 40  # characters before and after a chain that can make it part of a longer expression
_DIVIDED_BY_FRACTION = re.compile(r"/\s*(\d+(?:\.\d+)?\s*/\s*\d+(?:\.\d+)?)")


@dataclass(frozen=True)
class FalseEquation:
    """One equation of a chain that does not hold: `left` = `right` as written, with their values."""

    left: str
    right: str
    left_value: Fraction
    right_value: Fraction

    def __str__(self) -> str:
        return f"{self.left} = {self.right}"


def plain_arithmetic(text: str) -> str:
    r"""Return `text` with code blocks removed and LaTeX arithmetic written as plain arithmetic.

    >>> plain_arithmetic(r"$3 \times 4 = 12$ and \frac{1}{2} \div 2 = 0.25, so 1,200 + 5")
    '3 * 4 = 12 and (1/2) / 2 = 0.25, so 1200 + 5'
    """
    text = CODE_BLOCK.sub(" ", text)
    text = _DROPPED.sub("", text)
    text = _FRAC.sub(r"(\1/\2)", text)
    text = _TIMES.sub("*", text)
    text = _DIVIDE.sub("/", text)
    text = _MINUS.sub("-", text)
    return _THOUSANDS.sub("", text)


def false_equations(text: str) -> list[FalseEquation]:
    """Return the equations on plain numbers in `text` that do not hold, in order.

    >>> [str(e) for e in false_equations("So 7 + 50 = 12, and 80 - 14 = 66. Then 10 / 3 = 3.33.")]
    ['7 + 50 = 12']
    >>> false_equations("x - 3 + 4 = 5, 25% * 4 = 1, 5 + 3 = 8 - 2 = 6")
    []
    """
    text = plain_arithmetic(text)
    found = []
    for match in _CHAIN.finditer(text):
        # Only the neighbourhood is read: slicing the whole rest of the text per chain is quadratic.
        before = text[max(0, match.start() - _CONTEXT) : match.start()]
        after = text[match.end() : match.end() + _CONTEXT]
        chain = match.group().rstrip()
        if _GLUED_BEFORE.search(before) or _OPERATOR_BEFORE.search(before.rstrip()):
            continue
        if (chain == match.group() and _LETTER_AFTER.match(after)) or _MARK_AFTER.match(after):
            continue
        units = _WORD.findall(chain)
        if units and not _units_agree(chain, units, after):
            continue
        chain = _UNIT.sub("", chain)
        found.extend(_false_links(chain))
    return found


def _units_agree(chain: str, units: list[str], after: str) -> bool:
    """Whether the unit words of `chain` can be dropped, leaving the arithmetic its writer claims.

    A unit right before the last '=' must be the result's ("2 hours = 120
    minutes", "100 cents = $1" are conversions); sums and differences need one
    unit throughout ("4 pounds - 6 ounces = 58 ounces"), products and quotients
    change units ("7 boxes * 11 bolts = 77 bolts"). Prose is not a unit
    ("9 because - 18/-2 = 9").
    """
    if _NOT_UNITS.intersection(units):
        return False
    if _UNIT_BEFORE_RESULT.search(chain):
        result_unit = _WORD_AFTER.match(after)
        if result_unit is None or _singular(result_unit.group(1)) != _singular(units[-1]):
            return False
    return not _SUM.search(_UNIT.sub("", chain)) or len({_singular(unit) for unit in units}) == 1


def _singular(unit: str) -> str:
    return unit.removesuffix("s")


def _false_links(chain: str) -> list[FalseEquation]:
    """Return the false links of one equation chain; none when a part does not evaluate.

    A chain that opens with a plain number ("80 = (15/100)*80 = 12" after "15% of")
    is judged from its second link on: its first number may end a longer
    expression in words.
    """
    parts = [part.strip() for part in chain.split("=")]
    if len(parts) < 2 or not any(_has_operator(part) for part in parts):
        return []
    readings = [_readings(part) for part in parts]
    if not all(readings):
        return []
    first = 1 if _LITERAL.fullmatch(parts[0]) else 0
    false = []
    for i in range(first, len(parts) - 1):
        left, right = parts[i], parts[i + 1]
        if any(_continues(right, value) for value in readings[i]):
            continue
        if any(_holds(a, right, b) for a in readings[i] for b in readings[i + 1]):
            continue
        false.append(FalseEquation(left, right, readings[i][0], readings[i + 1][0]))
    return false


def _has_operator(part: str) -> bool:
    return _LITERAL.fullmatch(part.lstrip("-")) is None


def _continues(part: str, previous: Fraction) -> bool:
    """Whether `part` is a running total: it applies an operator to the value before it ("= 8 - 2")."""
    literal = _LITERAL.match(part)
    return _has_operator(part) and literal is not None and Fraction(literal.group()) == previous


def _holds(left_value: Fraction, right: str, right_value: Fraction) -> bool:
    """Whether left = right holds, allowing `right` to be `left` rounded when either is not whole."""
    if left_value == right_value:
        return True
    literal = _LITERAL.fullmatch(right)
    if literal is None or (left_value.denominator == 1 and right_value.denominator == 1):
        return False
    places = len(literal.group(1) or literal.group(2) or "")
    return abs(left_value - right_value) < Fraction(1, 10**places)


def _readings(part: str) -> list[Fraction]:
    """Return the values `part` may mean: as Python reads it, then with "/ a/b" as division by a fraction.

    "25 / 1/3 = 75" is how people write 25 / (1/3); Python reads (25 / 1) / 3.
    Empty when the part is not arithmetic on plain numbers.
    """
    values = []
    for reading in dict.fromkeys((part, _DIVIDED_BY_FRACTION.sub(r"/ (\1)", part))):
        try:
            value = _value(ast.parse(reading, mode="eval").body)
        except SyntaxError:
            return []
        if value is None:
            return []
        values.append(value)
    return values


def _value(node: ast.AST) -> Fraction | None:
    # Python's own grammar parses the chain; only these node types are arithmetic on plain numbers.
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return Fraction(repr(node.value))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        operand = _value(node.operand)
        return None if operand is None else (-operand if isinstance(node.op, ast.USub) else operand)
    if isinstance(node, ast.Call) and len(node.args) == 1 and not node.keywords:  # "8(100)": 8 times 100
        left, right = _value(node.func), _value(node.args[0])
        return None if left is None or right is None else left * right
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.Div)):
        left, right = _value(node.left), _value(node.right)
        if left is None or right is None or (isinstance(node.op, ast.Div) and right == 0):
            return None
        if isinstance(node.op, ast.Add):
            return left + right
        if isinstance(node.op, ast.Sub):
            return left - right
        return left * right if isinstance(node.op, ast.Mult) else left / right
    return None

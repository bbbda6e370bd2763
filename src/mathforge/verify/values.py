"""Values of answer atoms: exact numbers first, SymPy expressions when needed.

Numbers written the usual ways (integers, decimals, `a/b`, `\\frac{a}{b}`, mixed
numbers `2\\frac{1}{2}` and `1 1/2`, scientific notation, base subscripts
`1011_2`, space-separated thousands) are read exactly into `Fraction`s here,
without SymPy: most answers are numbers and this path costs microseconds.
Everything else goes through latex2sympy2_extended (the maintained LaTeX
parser Math-Verify uses), with symbols kept case-sensitive, `i` read as the
imaginary unit, degrees converted inside trigonometric functions, and decimal
literals made exact rationals. A decimal literal's precision is kept so the
comparison can decide whether it is an approximation.
"""

from __future__ import annotations

import functools
import operator
import re
from dataclasses import dataclass
from fractions import Fraction

import sympy
from latex2sympy2_extended import latex2sympy
from latex2sympy2_extended.latex2sympy2 import ConversionConfig

from mathforge.verify.normalize import is_text_answer, text_key

_CONVERSION = ConversionConfig(lowercase_symbols=False, interpret_as_mixed_fractions=True)
_INTEGER = re.compile(r"([+-]?)(\d+)")
_DECIMAL = re.compile(r"([+-]?)(\d*)\.(\d*)")
_SPACED_THOUSANDS = re.compile(r"[+-]?\d{1,3}(?: \d{3})+(?:\.\d+)?")
_SCIENTIFIC = re.compile(
    r"([+-]?\d*\.?\d+)\s*(?:[eE]\s*([+-]?\d+)|(?:\\times|\\cdot|\*|x)\s*10\s*\^\s*\{?\s*([+-]?\d+)\s*\}?)"
)
_FRACTION = re.compile(r"([+-]?)\s*\\frac\{\s*([+-]?\d+)\s*\}\{\s*([+-]?\d+)\s*\}|([+-]?\d+)\s*/\s*([+-]?\d+)")
_MIXED = re.compile(r"([+-]?)(\d+)\s*(?:\\frac\{(\d+)\}\{(\d+)\}|\s(\d+)/(\d+))")
_BASED = re.compile(r"((?=[0-9A-Z]*\d)[0-9A-Z]+)_\{?(\d{1,2})\}?")
_DECIMAL_LITERAL = re.compile(r"(?<![\d.])(\d*)\.(\d+)(?![\d.])")
_TRIG = re.compile(r"\\(?:sin|cos|tan|sec|csc|cot)(?![a-zA-Z])")
_DEGREE_VALUE = re.compile(r"(\d+(?:\.\d+)?|\})\s*\^\{\\circ\}")
# Machine-float printouts carry this many significant digits or more.
FLOAT_PRINTOUT_DIGITS = 12


@dataclass(frozen=True)
class Number:
    """An exactly read number and how it was written.

    `places` is the count of decimal places of a decimal literal (None for
    integers and fractions), `sig` its significant digits; `base` and
    `digits` record a base subscript (`1011_2`) or a plain integer's digits.
    """

    value: Fraction
    places: int | None = None
    sig: int = 0
    base: int | None = None
    digits: str = ""


@dataclass(frozen=True)
class Expression:
    """A SymPy expression (or matrix) with the decimal literals it was written with."""

    expr: sympy.Basic
    literals: tuple[tuple[int, int, Fraction], ...] = ()


def number_value(text: str) -> Number | None:
    r"""Read `text` as an exact number, or return None.

    >>> number_value(r"2\frac{1}{2}").value
    Fraction(5, 2)
    >>> number_value("1011_2").value
    Fraction(11, 1)
    >>> number_value("3.54e-07").places
    9
    """
    text = text.strip()
    if _SPACED_THOUSANDS.fullmatch(text):
        text = text.replace(" ", "")
    match = _INTEGER.fullmatch(text)
    if match:
        return Number(Fraction(int(match.group(1) + match.group(2))), digits=match.group(2).lstrip("0") or "0")
    match = _DECIMAL.fullmatch(text)
    if match and (match.group(2) or match.group(3)):
        return _decimal(match.group(1), match.group(2), match.group(3), 0)
    match = _SCIENTIFIC.fullmatch(text)
    if match:
        mantissa = _DECIMAL.fullmatch(match.group(1)) or _INTEGER.fullmatch(match.group(1))
        exponent = int(match.group(2) or match.group(3))
        if mantissa.re is _INTEGER:
            return _decimal(mantissa.group(1), mantissa.group(2), "", exponent)
        return _decimal(mantissa.group(1), mantissa.group(2), mantissa.group(3), exponent)
    match = _FRACTION.fullmatch(text)
    if match:
        if match.group(2) is not None:
            numerator, denominator = int(match.group(2)), int(match.group(3))
            sign = -1 if match.group(1) == "-" else 1
        else:
            numerator, denominator, sign = int(match.group(4)), int(match.group(5)), 1
        return Number(sign * Fraction(numerator, denominator)) if denominator else None
    match = _MIXED.fullmatch(text)
    if match:
        numerator = int(match.group(3) or match.group(5))
        denominator = int(match.group(4) or match.group(6))
        if 0 < numerator < denominator:
            value = int(match.group(2)) + Fraction(numerator, denominator)
            return Number(-value if match.group(1) == "-" else value)
    match = _BASED.fullmatch(text)
    if match:
        base = int(match.group(2))
        digits = match.group(1)
        if 2 <= base <= 36 and all(int(digit, 36) < base for digit in digits):
            return Number(Fraction(int(digits, base)), base=base, digits=digits.lstrip("0") or "0")
    return None


def _decimal(sign: str, whole: str, fraction: str, exponent: int) -> Number:
    digits = (whole + fraction).lstrip("0")
    value = Fraction(int(whole or "0") * 10 ** len(fraction) + int(fraction or "0"), 10 ** len(fraction))
    value *= Fraction(10) ** exponent
    return Number(-value if sign == "-" else value, places=max(0, len(fraction) - exponent), sig=len(digits))


def decimal_literals(text: str) -> tuple[tuple[int, int, Fraction], ...]:
    """Return (places, significant digits, value) of every decimal literal in `text`."""
    literals = []
    for match in _DECIMAL_LITERAL.finditer(text):
        whole, fraction = match.group(1), match.group(2)
        value = Fraction(int(whole or "0") * 10 ** len(fraction) + int(fraction), 10 ** len(fraction))
        literals.append((len(fraction), len((whole + fraction).lstrip("0")), value))
    return tuple(literals)


def words_value(text: str) -> str | None:
    """Return the comparable key of a text answer (`\\text{Evelyn}`, `odd`), or None."""
    return text_key(text) if is_text_answer(text) else None


@functools.lru_cache(maxsize=50_000)
def expression_value(text: str) -> Expression | None:
    """Parse an atom with latex2sympy2_extended; None when it is not mathematics.

    Cached: a reference is parsed once per process however many responses it
    is compared with.
    """
    latex = _prepare(text)
    try:
        expr = latex2sympy(latex, normalization_config=None, conversion_config=_CONVERSION)
    except MemoryError:
        raise
    except Exception:  # the parser raises bare Exceptions and SymPy errors alike
        return None
    if isinstance(expr, sympy.MatrixBase) or getattr(expr, "is_Matrix", False) or r"\begin" in latex:
        # Matrix arithmetic (sums, products, powers) is left unevaluated by the parser.
        try:
            expr = _matrix_arithmetic(expr.doit())
        except MemoryError:
            raise
        except Exception:  # SymPy raises ShapeError, TypeError... on ill-formed matrix arithmetic
            return None
        if isinstance(expr, sympy.MatrixBase):
            expr = sympy.ImmutableMatrix(expr)
    elif not isinstance(expr, sympy.Expr):
        return None
    expr = _exact(expr)
    return Expression(expr, decimal_literals(text))


def _matrix_arithmetic(expr: sympy.Basic) -> sympy.Basic:
    """Evaluate sums, products and integer powers whose operands are explicit matrices."""
    if isinstance(expr, sympy.MatrixBase) or not expr.args:
        return expr
    args = [_matrix_arithmetic(arg) for arg in expr.args]
    if not any(isinstance(arg, sympy.MatrixBase) for arg in args):
        return expr
    if isinstance(expr, (sympy.Pow, sympy.MatPow)):
        return args[0] ** args[1]
    if isinstance(expr, (sympy.Add, sympy.MatAdd)):
        return functools.reduce(operator.add, args)
    if isinstance(expr, (sympy.Mul, sympy.MatMul)):
        return functools.reduce(operator.mul, args)
    return expr


def _prepare(text: str) -> str:
    r"""Adapt an atom to the parser: degrees as radians inside trig functions, `i` made explicit."""
    if r"^{\circ}" in text:
        if _TRIG.search(text):
            text = _DEGREE_VALUE.sub(_radians, text)
        text = text.replace(r"^{\circ}", "")
    return text


def _radians(match: re.Match[str]) -> str:
    value = match.group(1)
    if value == "}":
        return r"}\cdot\frac{\pi}{180}"
    return "(" + value + r"\cdot\frac{\pi}{180})"


def _exact(expr: sympy.Basic) -> sympy.Basic:
    """Make decimal literals exact rationals and read the symbol `i` as the imaginary unit."""
    replacements = {}
    for atom in expr.atoms(sympy.Float):
        replacements[atom] = sympy.Rational(str(atom))
    for symbol in expr.free_symbols:
        if symbol.name == "i":
            replacements[symbol] = sympy.I
    return expr.xreplace(replacements) if replacements else expr

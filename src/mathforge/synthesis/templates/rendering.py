"""Text out of values: placeholders filled, answers and intermediate values formatted.

`render_text` fills `{name}` / `{name:spec}` placeholders (problem texts and
solution templates) and reports the ones it could not fill. `answer_type_of`
reads the type of a reference answer; `format_answer` writes a program's
answer as that type or refuses it (no '894.0' for an integer, no 1/3 for a
decimal); `format_value` writes an intermediate value for a solution text.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from fractions import Fraction
from typing import Any, Callable, Literal, Mapping

from mathforge.synthesis.templates.slots import Number

PLACEHOLDER = re.compile(r"\{([A-Za-z_]\w*)(?::([^{}]*))?\}")


def render_text(
    text: str, values: Mapping[str, object], default_format: Callable[[str, Any], str]
) -> tuple[str, list[str]]:
    """Fill `{name}` / `{name:spec}` placeholders; return the text and the placeholders left unresolved.

    Names not in `values` stay as written (LaTeX braces such as `\\text{cm}`
    are not placeholders); so does a placeholder whose format spec does not
    apply to its value. A format spec is applied to the raw value.

    >>> render_text("{a} + {b:.1f} = {c}", {"a": 1, "b": 2}, lambda name, value: str(value))
    ('1 + 2.0 = {c}', ['c'])
    """
    unresolved: list[str] = []

    def replace(match: re.Match[str]) -> str:
        name, spec = match.group(1), match.group(2)
        if name not in values:
            unresolved.append(name)
            return match.group(0)
        value = values[name]
        if not spec:
            return default_format(name, value)
        try:
            return format(value, spec)
        except (TypeError, ValueError):
            unresolved.append(f"{name}:{spec}")
            return match.group(0)

    return PLACEHOLDER.sub(replace, text), unresolved


AnswerType = Literal["integer", "decimal", "fraction"]


def answer_type_of(answer: str) -> AnswerType | None:
    """Infer the answer type of a reference answer, None when it is not a plain number.

    Dollar and percent signs and thousands separators are ignored.

    >>> [answer_type_of(a) for a in ["1,200", "-3.5", "\\\\frac{3}{4}", "x+1"]]
    ['integer', 'decimal', 'fraction', None]
    """
    text = answer.strip().strip("$").strip()
    text = re.sub(r"^\\boxed\{(.*)\}$", r"\1", text).replace("\\$", "").replace("\\%", "").rstrip("%").strip()
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)
    if re.fullmatch(r"-?\d+", text):
        return "integer"
    if re.fullmatch(r"-?\d*\.\d+", text):
        return "decimal"
    if re.fullmatch(r"-?\\d?frac\{\d+\}\{0*[1-9]\d*\}|-?\d+\s*/\s*0*[1-9]\d*", text):
        return "fraction"
    return None


def format_answer(value: Number, answer_type: str, *, max_places: int) -> str | None:
    """Format a program's answer as `answer_type`, or None when it is not of that type.

    Floats within 1e-9 (relative) of an integer or of a short decimal are read
    as that value, so a program that divides still gives '894', never '894.0';
    a fraction is written `\\frac{p}{q}` (an integer when q is 1).

    >>> format_answer(894.0, "integer", max_places=2), format_answer(2.5, "integer", max_places=2)
    ('894', None)
    >>> format_answer(12.500000000001, "decimal", max_places=2), format_answer(Fraction(6, 4), "fraction", max_places=2)
    ('12.5', '\\\\frac{3}{2}')
    """
    exact = _exact(value, answer_type, max_places)
    if exact is None:
        return None
    if exact.denominator == 1:
        return str(exact.numerator)
    if answer_type == "fraction":
        sign = "-" if exact < 0 else ""
        return f"{sign}\\frac{{{abs(exact.numerator)}}}{{{exact.denominator}}}"
    return _decimal_text(exact)


def _exact(value: Number, answer_type: str, max_places: int) -> Fraction | None:
    """The exact value a program's answer stands for under `answer_type`, or None."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        limit = 1 if answer_type == "integer" else (10**max_places if answer_type == "decimal" else 10**4)
        candidate = (
            Fraction(round(value * limit), limit)
            if answer_type != "fraction"
            else Fraction(value).limit_denominator(limit)
        )
        if abs(float(candidate) - value) > 1e-9 * max(1.0, abs(value)):
            return None
        value = candidate
    exact = Fraction(value)
    if answer_type == "integer":
        return exact if exact.denominator == 1 else None
    if answer_type == "decimal":
        return exact if (exact * 10**max_places).denominator == 1 else None
    return exact if answer_type == "fraction" else None


def _terminates(value: Fraction) -> bool:
    """Whether `value` has a finite decimal expansion (its denominator has no prime factor but 2 and 5)."""
    denominator = value.denominator
    for prime in (2, 5):
        while denominator % prime == 0:
            denominator //= prime
    return denominator == 1


def _decimal_text(value: Fraction) -> str:
    """A Fraction with a terminating decimal expansion as a plain decimal string, trailing zeros dropped."""
    if not _terminates(value):
        raise ValueError(f"{value} has no finite decimal expansion")
    places = 0
    while (value * 10**places).denominator != 1:
        places += 1
    text = f"{Decimal(value.numerator) / Decimal(value.denominator):.{places}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def format_value(value: object) -> str:
    """Format an intermediate value for a solution text: integers plainly, others as short decimals or p/q.

    >>> format_value(7.050000000000001), format_value(Fraction(1, 3)), format_value(12.0)
    ('7.05', '1/3', '12')
    """
    if isinstance(value, float) and math.isfinite(value):
        value = Fraction(round(value, 6)).limit_denominator(10**6)
    if isinstance(value, Fraction):
        if value.denominator == 1:
            return str(value.numerator)
        return (
            _decimal_text(value)
            if _terminates(value) and value.denominator <= 10**6
            else f"{value.numerator}/{value.denominator}"
        )
    return str(value)

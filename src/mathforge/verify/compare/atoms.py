"""Single values as written: string, words, percent and unit policies, then `compare_values` (`compare_atoms`).

Guarantees: units are compared only under `units='match'` and when both sides
carry one; explicit text (`\\text{odd}`) compares as text only; a percent on
one side is read under the `percent` policy (as a fraction, as a number, or
either).
"""

from __future__ import annotations

import re
from fractions import Fraction

import sympy

from mathforge.verify.compare.expressions import answer_value, compare_values
from mathforge.verify.compare.outcome import Outcome
from mathforge.verify.config import VerifyConfig
from mathforge.verify.normalize import canonical_unit, is_text_answer
from mathforge.verify.parse import Atom
from mathforge.verify.values import Expression, Number, words_value


def squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def compare_atoms(reference: Atom, candidate: Atom, config: VerifyConfig) -> Outcome:
    """Compare two single values under the percent and unit policies."""
    if config.units == "match" and reference.unit and candidate.unit:
        if canonical_unit(reference.unit) != canonical_unit(candidate.unit):
            return Outcome(False, "unit_mismatch", "string")
    if squash(reference.text) == squash(candidate.text) and reference.percent == candidate.percent:
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
    reference_value, candidate_value = answer_value(reference.text), answer_value(candidate.text)
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

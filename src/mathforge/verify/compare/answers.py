"""The entry point: two extracted answer strings to a Verdict (`compare_answers`).

Guards first (size and shape limits), then cleaned LaTeX compared as strings,
then every parse of the reference against every parse of the candidate
(`nodes.compare_nodes`): the first equal pair wins, else the most decided
outcome. The reference comes first: a candidate `3 \\cdot 4 = 13` is read as its
result 13, a reference equation `7 = 11a + c` stays an equation.
"""

from __future__ import annotations

from functools import lru_cache

from mathforge.records import Verdict
from mathforge.verify.compare.atoms import squash
from mathforge.verify.compare.nodes import compare_nodes
from mathforge.verify.compare.numbers import effective_config
from mathforge.verify.compare.outcome import Outcome
from mathforge.verify.config import VerifyConfig
from mathforge.verify.guards import check_answer
from mathforge.verify.normalize import clean_latex
from mathforge.verify.parse import Node, parse_answer

_DEFAULT = VerifyConfig()


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
    if squash(clean_reference) == squash(clean_candidate):
        return Verdict(is_correct=True, reason="string_match", extracted=candidate, method="string")
    try:
        outcome = _compare_readings(_parsed(clean_reference), _parsed(clean_candidate), config)
    except RecursionError:
        outcome = Outcome(None, "too_complex", "symbolic")
    return Verdict(is_correct=outcome.is_equal, reason=outcome.reason, extracted=candidate, method=outcome.method)


@lru_cache(maxsize=50_000)
def _parsed(clean: str) -> tuple[Node, ...]:
    return parse_answer(clean)


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

"""`verify_answer`: extract the final answer from a response and compare it with the reference.

A pure function (no timeouts, no I/O): guards bound what it evaluates, and
`VerifierPool` adds hard timeouts, parallelism and caching around it.
"""

from __future__ import annotations

import re

from mathforge.records import Verdict
from mathforge.verify.compare import compare_answers
from mathforge.verify.config import VerifyConfig
from mathforge.verify.extract import extract_answer
from mathforge.verify.guards import check_response

_DEFAULT = VerifyConfig()
# Phrases by which a problem asks for a decimal rather than an exact form.
_DECIMAL_REQUEST = re.compile(
    r"(?i)\bdecimal\b|\bnearest\s+(?:tenth|hundredth|thousandth|ten-thousandth|whole|integer|cent|percent)"
    r"|\bround(?:ed|ing)?\b|\bapproximat(?:e|ely|ion)\b|\bsignificant\s+(?:figures?|digits?)\b|\bestimate\b"
)


def asks_for_decimal(problem: str) -> bool:
    """Tell whether a problem text asks for a decimal or rounded answer (the `decimal_requested` flag).

    >>> asks_for_decimal("Express your answer as a decimal to the nearest tenth.")
    True
    >>> asks_for_decimal("What is the area of the circle? Express your answer in terms of $\\pi$.")
    False
    """
    return bool(_DECIMAL_REQUEST.search(problem))


def reference_answer(reference: str) -> str:
    r"""Return the answer carried by a reference: itself, or what a reference solution boxes.

    References are usually bare answers; a MATH-style solution or a wrapped
    answer (`$\boxed{12}$`) is reduced with the same lenient extraction.
    """
    return extract_answer(reference, mode="lenient") or reference


def verify_answer(
    reference: str, response: str, config: VerifyConfig = _DEFAULT, *, decimal_requested: bool | None = None
) -> Verdict:
    r"""Judge a full response against a reference answer.

    Reference first: the relation is not symmetric. The answer is extracted
    from `response` only (in `config.extraction` mode); the reference is taken
    as the answer (a reference solution is reduced to its boxed answer).
    `Verdict.extracted` holds the extracted answer; `is_correct` is None with
    a snake_case reason when the pair cannot be judged ('no_answer_found',
    'unparsable', 'guard_*'). `decimal_requested` is whether the problem asks
    for a decimal (`asks_for_decimal(problem)`; None: unknown), which the
    `approximate_constants` policy may need; the function stays pure.

    No timeout applies here (guards bound the known blow-ups); SymPy and
    mpmath keep process-wide state, so run concurrent verification through
    `VerifierPool`'s processes rather than threads calling this function.

    >>> verify_answer("42", "6 times 7 is 42, so the answer is $\\boxed{42}$.").reason
    'string_match'
    >>> verify_answer(r"\frac{1}{2}", "The answer is 0.5").is_correct
    True
    >>> verify_answer("7", "I am not sure.", VerifyConfig(extraction="strict")).reason
    'no_answer_found'
    """
    guard = check_response(response, config)
    if guard is not None:
        return Verdict(is_correct=None, reason=guard, extracted=None, method="guard")
    extracted = extract_answer(response, mode=config.extraction)
    if extracted is None or not extracted.strip():
        return Verdict(is_correct=None, reason="no_answer_found", extracted=None, method="extraction")
    return compare_answers(reference_answer(reference), extracted, config, decimal_requested=decimal_requested)

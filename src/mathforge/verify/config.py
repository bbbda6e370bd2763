"""The verification policy: one frozen config section, every choice explicit.

Upstream graders disagree on percent, units, list order and tolerance (the
MATH grader compares strings, Math-Verify rounds floats to 6 digits, the
Qwen-style graders use a 1e-4 relative tolerance). mathforge states its
defaults here, documents each one, and records the policy with every verdict
through `verifier_name`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mathforge.section import Section


class VerifyConfig(Section):
    """Policy and limits of the answer verifier (section `verification` of a job config)."""

    extraction: Literal["strict", "lenient"] = Field(
        default="lenient",
        description=(
            "How a final answer is found in a response. 'strict': only an explicit final answer "
            "(\\boxed{}, 'The answer is', 'Final Answer:', GSM8K '####'). 'lenient': also a response that "
            "is nothing but an answer, then the last math span or number."
        ),
    )
    percent: Literal["either", "fraction", "number"] = Field(
        default="either",
        description=(
            "Meaning of a percent sign. 'either': 10% equals both 0.1 and 10 (the sign is often "
            "dropped or kept by habit); 'fraction': 10% equals 0.1 only; 'number': the sign is "
            "ignored, 10% equals 10 only."
        ),
    )
    units: Literal["ignore", "match"] = Field(
        default="ignore",
        description=(
            "Trailing units (\\text{ cm}, 'square units', '5 dollars'). 'ignore': stripped from both "
            "sides. 'match': stripped, but when both sides carry units they must be the same words. "
            "A letter glued to a number (10m, 10cm) is algebra, not a unit, under both policies."
        ),
    )
    list_order: Literal["unordered", "ordered"] = Field(
        default="unordered",
        description=(
            "Bare comma lists ('1, 2, 3'): 'unordered' compares them as sets of solutions; 'ordered' "
            "element by element. Parenthesized tuples are always ordered, braced sets never."
        ),
    )
    rel_tol: float = Field(
        default=1e-9,
        ge=0.0,
        description=(
            "Relative tolerance for machine-float printouts (decimals with 12 or more significant "
            "digits, e.g. 0.30000000000000004). Shorter decimals and integers compare exactly."
        ),
    )
    approx_min_digits: int = Field(
        default=4,
        ge=0,
        description=(
            "A decimal with at least this many significant digits matches an exact value that has "
            "no terminating decimal of that length when it is within one unit of its last digit "
            "(rounded or truncated: 1.414 for \\sqrt{2}, 125.663 for 40\\pi). 0 disables."
        ),
    )
    approximate_constants: Literal["when_asked", "always", "never"] = Field(
        default="when_asked",
        description=(
            "May a decimal answer stand for an exact irrational reference (1.414 for \\sqrt{2}, 125.663 for "
            "40\\pi, including 16-digit float printouts)? A decimal reference (the problem asked for one) "
            "accepts the exact value it rounds under every policy. 'never': no, only an exact form is correct; 'always': yes, "
            "within approx_min_digits / rel_tol; 'when_asked': only when the problem asks for a decimal "
            "(rounding, decimal places, 'approximately'...; see verify.asks_for_decimal). The caller passes "
            "that fact as `decimal_requested`; when it is unknown (None, a bare answer pair) 'when_asked' "
            "accepts. Decimals for non-terminating rationals (0.3333 for 1/3) are governed by "
            "approx_min_digits alone."
        ),
    )
    timeout_s: float = Field(
        default=5.0, gt=0.0, description="Hard wall-clock limit per pair in VerifierPool, seconds."
    )
    n_workers: int = Field(default=2, ge=1, description="Worker processes of VerifierPool.")
    memory_mb: int = Field(
        default=1024, ge=128, description="Address-space cap per worker process, MiB (RLIMIT_AS)."
    )
    mp_context: Literal["forkserver", "spawn"] = Field(
        default="forkserver",
        description=(
            "Start method of pool workers. Both are safe when the parent has threads (fork is not); "
            "forkserver replaces a killed worker in milliseconds instead of re-importing SymPy."
        ),
    )
    cache_size: int = Field(
        default=200_000, ge=0, description="Verdicts kept by VerifierPool's cache (0 disables it)."
    )
    max_response_chars: int = Field(
        default=200_000, ge=1, description="Longer responses are unjudgeable (guard_response_too_long)."
    )
    max_answer_chars: int = Field(
        default=2_000, ge=1, description="Longer extracted answers are unjudgeable (guard_answer_too_long)."
    )
    max_exponent: int = Field(
        default=100_000,
        ge=1,
        description="Largest numeric exponent evaluated; larger ones and power towers are unjudgeable.",
    )
    max_factorial: int = Field(
        default=10_000, ge=1, description="Largest n evaluated in n!; larger is unjudgeable (guard_factorial)."
    )
    max_nesting: int = Field(
        default=40, ge=1, description="Deepest bracket/brace nesting parsed; deeper is unjudgeable (guard_nesting)."
    )


def verifier_name(config: VerifyConfig) -> str:
    """Return the short name recorded in the `verifier` column, e.g. 'mathforge-verify/lenient'.

    Policies that differ from the defaults are appended, so two runs with
    different policies never share a name.

    >>> verifier_name(VerifyConfig())
    'mathforge-verify/lenient'
    >>> verifier_name(VerifyConfig(extraction="strict", percent="fraction"))
    'mathforge-verify/strict+percent=fraction'
    """
    default = VerifyConfig()
    policy_fields = ("percent", "units", "list_order", "rel_tol", "approx_min_digits", "approximate_constants")
    changed = [
        f"{name}={getattr(config, name)}"
        for name in policy_fields
        if getattr(config, name) != getattr(default, name)
    ]
    return "mathforge-verify/" + "+".join([config.extraction, *changed])

"""Guards: refuse inputs whose evaluation could hang or exhaust memory.

SymPy evaluates `2^{2^{2^{100}}}` or `100000!` eagerly while parsing, and no
timeout inside a pure function can stop it. These checks run on the text
before any parsing, in linear time, and name what they refused (the
`guard_*` reasons of an unjudgeable verdict). Math-Verify relies on a
signal-based timeout instead, which cannot run in worker threads; the process
pool's hard timeout remains the last line of defence.
"""

from __future__ import annotations

import math
import re

from mathforge.verify.config import VerifyConfig

_FACTORIAL = re.compile(r"(\d+)\s*!")
# A factorial of a group that itself holds a factorial: ((10!)!)! grows beyond any limit.
_NESTED_FACTORIAL = re.compile(r"!\s*[)}\]]\s*!")
_SCIENTIFIC_EXPONENT = re.compile(r"\d[eE]\s*[+-]?(\d+)")
_INTEGER_BASE = re.compile(r"(\d+)\s*$")


def check_response(response: str, config: VerifyConfig) -> str | None:
    """Return a guard reason when a full response is too long to judge, else None."""
    if len(response) > config.max_response_chars:
        return "guard_response_too_long"
    return None


def check_answer(answer: str, config: VerifyConfig) -> str | None:
    """Return a guard reason when evaluating `answer` could hang, else None.

    >>> check_answer("2^{2^{2^{2^{10}}}}", VerifyConfig())
    'guard_power_tower'
    >>> check_answer("1000000!", VerifyConfig())
    'guard_factorial'
    >>> check_answer(r"\\frac{1}{2}", VerifyConfig()) is None
    True
    """
    if len(answer) > config.max_answer_chars:
        return "guard_answer_too_long"
    if _max_depth(answer) > config.max_nesting:
        return "guard_nesting"
    for match in _FACTORIAL.finditer(answer):
        if len(match.group(1)) > 12 or int(match.group(1)) > config.max_factorial:
            return "guard_factorial"
    if _NESTED_FACTORIAL.search(answer):
        return "guard_factorial"
    for match in _SCIENTIFIC_EXPONENT.finditer(answer):
        if len(match.group(1)) > 12 or int(match.group(1)) > config.max_exponent:
            return "guard_exponent"
    return _check_powers(answer, config)


def _max_depth(text: str) -> int:
    depth = deepest = 0
    for char in text:
        if char in "({[":
            depth += 1
            deepest = max(deepest, depth)
        elif char in ")}]":
            depth = max(0, depth - 1)
    return deepest


def _check_powers(text: str, config: VerifyConfig) -> str | None:
    """Refuse numeric exponents above the limit and power towers that exceed it."""
    limit_log10 = math.log10(config.max_exponent)
    for position in (i for i, char in enumerate(text) if char == "^"):
        exponent = _exponent_text(text, position + 1)
        magnitude = _log10_of(exponent)
        if magnitude is None or magnitude <= limit_log10:
            base = _INTEGER_BASE.search(text[:position])
            if magnitude is not None and base and len(base.group(1)) * 10**magnitude > config.max_exponent:
                return "guard_exponent"
            continue
        return "guard_power_tower" if "^" in exponent else "guard_exponent"
    return None


def _exponent_text(text: str, start: int) -> str:
    """Return the exponent after a `^`: a braced group or a single token."""
    while start < len(text) and text[start] == " ":
        start += 1
    if start < len(text) and text[start] == "{":
        depth = 0
        for end in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[end], 0)
            if depth == 0:
                return text[start + 1 : end]
        return text[start + 1 :]
    match = re.match(r"\d+|\\?[A-Za-z]+|.", text[start:])
    return match.group() if match else ""


def _log10_of(exponent: str) -> float | None:
    """Upper bound of log10 of an exponent made of integers and powers; None if symbolic."""
    exponent = exponent.strip().strip("{}").strip().lstrip("+-")
    if re.fullmatch(r"\d+", exponent):
        return math.log10(int(exponent)) if len(exponent) < 300 and int(exponent) > 0 else float(len(exponent))
    match = re.fullmatch(r"(\d+)\s*\^\s*(.+)", exponent, re.DOTALL)
    if match is None:
        return None
    inner = _log10_of(match.group(2))
    if inner is None:
        return None
    base = int(match.group(1)) if len(match.group(1)) < 300 else 10 ** 300
    if base <= 1:
        return 0.0
    if inner > 300:
        return float("inf")
    return 10**inner * math.log10(base)

"""Guards: inputs that would hang SymPy are refused quickly, in process, as unjudgeable."""

from __future__ import annotations

import time

import pytest

from mathforge.verify import VerifyConfig, compare_answers, verify_answer
from mathforge.verify.guards import check_answer

BOMBS = [
    ("2^{2^{2^{2^{2^{2}}}}}", "guard_power_tower", "power_tower"),
    ("9^{9^{9}}", "guard_power_tower", "short_power_tower"),
    ("10^{10^{10}}", "guard_power_tower", "exponent_is_a_power"),
    ("7^{123456789}", "guard_exponent", "huge_exponent"),
    ("123456789^{99999}", "guard_exponent", "huge_result_digits"),
    ("1e999999", "guard_exponent", "huge_scientific_exponent"),
    ("99999999!", "guard_factorial", "giant_factorial"),
    ("((10!)!)!", "guard_factorial", "nested_factorial"),
    ("(" * 60 + "1" + ")" * 60, "guard_nesting", "deep_parentheses"),
    (r"\frac{" * 45 + "1" + "}{2}" * 45, "guard_nesting", "deep_fractions"),
    ("1" * 5000, "guard_answer_too_long", "long_answer"),
]


@pytest.mark.parametrize(("answer", "reason"), [row[:2] for row in BOMBS], ids=[row[2] for row in BOMBS])
def test_bomb_is_refused_quickly(answer: str, reason: str) -> None:
    start = time.perf_counter()
    verdict = compare_answers("1", answer)
    assert (verdict.is_correct, verdict.reason, verdict.method) == (None, reason, "guard")
    assert time.perf_counter() - start < 0.5


@pytest.mark.parametrize("answer", ["2^{2^{4}}", "2^{1000}", "20!", r"\frac{(2n)!}{n!(n+1)!}", "10^{-300}"])
def test_harmless_powers_and_factorials_pass(answer: str) -> None:
    assert check_answer(answer, VerifyConfig()) is None


def test_limits_are_configurable() -> None:
    assert check_answer("50!", VerifyConfig(max_factorial=20)) == "guard_factorial"
    assert check_answer("2^{2000}", VerifyConfig(max_exponent=1000)) == "guard_exponent"


def test_bomb_reference_is_refused_too() -> None:
    assert compare_answers("10^{10^{10}}", "1").reason == "guard_power_tower"


@pytest.mark.parametrize(
    "response",
    ["x" * 1_000_000, "1 " * 500_000, "$" * 1_000_000, r"\boxed{" * 100_000],
    ids=["letters", "numbers", "dollars", "open_boxes"],
)
def test_megabyte_response_is_unjudgeable_fast(response: str) -> None:
    start = time.perf_counter()
    verdict = verify_answer("1", response)
    assert (verdict.is_correct, verdict.reason) == (None, "guard_response_too_long")
    assert time.perf_counter() - start < 0.5


@pytest.mark.parametrize(
    "response",
    ["$" * 150_000, r"\boxed{" * 20_000, "2, " * 60_000, "(" * 150_000, r"\frac{" * 25_000],
    ids=["dollars", "open_boxes", "numbers", "parentheses", "fractions"],
)
def test_long_response_below_the_limit_is_handled_in_linear_time(response: str) -> None:
    start = time.perf_counter()
    verdict = verify_answer("1", response)
    assert verdict.is_correct is not True
    assert time.perf_counter() - start < 2.0

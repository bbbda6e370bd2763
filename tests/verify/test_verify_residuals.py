"""The three verifier residuals of issue 18, as (reference, candidate, expected) tables.

1. Tiny values: no absolute tolerance, so distinct small values stay distinct
   and only a true zero (a rounding residue) equals 0.
2. `approximate_constants`: a decimal for an exact irrational, by policy and by
   whether the problem asks for a decimal (`decimal_requested`).
3. `A:` lines: the GSM8K model-solution convention.
"""

from __future__ import annotations

import pytest

from mathforge.verify import VerifierPool, VerifyConfig, asks_for_decimal, compare_answers, extract_answer, verify_answer

TINY = [
    (r"\sqrt{2} \cdot 10^{-50}", r"\sqrt{3} \cdot 10^{-50}", False, "distinct_tiny_irrationals"),
    (r"10^{-50}", r"2 \cdot 10^{-50}", False, "distinct_tiny_rationals_exact"),
    (r"10^{-50}", r"\frac{1}{10^{50}}", True, "same_tiny_rational"),
    (r"e^{-200}", "0", False, "tiny_constant_is_not_zero"),
    ("0", r"e^{-200}", False, "zero_is_not_tiny_constant"),
    (r"x \cdot 10^{-30}", r"2x \cdot 10^{-30}", False, "tiny_coefficients_in_functions"),
    (r"\pi \cdot 10^{-40}", r"\frac{\pi}{10^{40}}", True, "same_tiny_irrational"),
    ("0", r"\sin(\pi)", True, "exact_zero_residue"),
    ("0", r"\cos\frac{\pi}{7} + \cos\frac{3\pi}{7} + \cos\frac{5\pi}{7} - \frac{1}{2}", True, "cancelling_sum_is_zero"),
    (r"\frac{1}{2}", r"\cos\frac{\pi}{7} + \cos\frac{3\pi}{7} + \cos\frac{5\pi}{7}", True, "cancelling_sum_value"),
    ("1e-50", "2e-50", False, "scientific_tiny"),
    (r"\sin^2 x + \cos^2 x", "1", True, "identity_still_holds"),
]


@pytest.mark.parametrize(("reference", "candidate", "expected"), [c[:3] for c in TINY], ids=[c[3] for c in TINY])
def test_tiny_values_compare_relatively(reference: str, candidate: str, expected: bool) -> None:
    assert compare_answers(reference, candidate).is_correct is expected


APPROXIMATE = [
    # (policy, decimal_requested, reference, candidate, expected)
    ("when_asked", False, r"40\pi", "125.663", False, "not_asked_rounded_pi"),
    ("when_asked", True, r"40\pi", "125.663", True, "asked_rounded_pi"),
    ("when_asked", None, r"40\pi", "125.663", True, "unknown_problem_benefit_of_doubt"),
    ("when_asked", False, r"\frac{\sqrt{3}}{2}", "0.8660254037844386", False, "not_asked_float_printout"),
    ("when_asked", False, r"x + \sqrt{2}i", "x + 1.414i", False, "not_asked_decimal_inside_expression"),
    ("when_asked", False, r"\frac{2}{3}", "0.6667", True, "rational_not_governed"),
    ("when_asked", False, r"\sqrt{8}", r"2\sqrt{2}", True, "exact_forms_unaffected"),
    ("never", True, r"\sqrt{3}", "1.732", False, "never_even_when_asked"),
    ("never", False, "4.123105625617661", r"\sqrt{17}", True, "decimal_reference_accepts_exact_answer"),
    ("never", False, "1.414", r"\sqrt{2}", True, "rounded_reference_accepts_exact_answer"),
    ("always", False, r"\sqrt{3}", "1.732", True, "always_even_when_not_asked"),
    ("always", False, r"\sqrt{3}", "1.733", False, "always_still_needs_a_rounding"),
]


@pytest.mark.parametrize(
    ("policy", "requested", "reference", "candidate", "expected"),
    [c[:5] for c in APPROXIMATE],
    ids=[c[5] for c in APPROXIMATE],
)
def test_approximate_constants_policy(
    policy: str, requested: bool | None, reference: str, candidate: str, expected: bool
) -> None:
    config = VerifyConfig(approximate_constants=policy)
    assert compare_answers(reference, candidate, config, decimal_requested=requested).is_correct is expected
    response = f"The answer is ${candidate}$."
    assert verify_answer(reference, response, config, decimal_requested=requested).is_correct is expected


REQUESTS = [
    ("Round your answer to the nearest hundredth.", True, "nearest_hundredth"),
    ("Express your answer as a decimal.", True, "as_a_decimal"),
    ("Approximately how many meters is it?", True, "approximately"),
    ("Give the answer to three significant figures.", True, "significant_figures"),
    (r"Express your answer in terms of $\pi$.", False, "in_terms_of_pi"),
    ("Express your answer in simplest radical form.", False, "radical_form"),
]


@pytest.mark.parametrize(("problem", "expected"), [c[:2] for c in REQUESTS], ids=[c[2] for c in REQUESTS])
def test_asks_for_decimal(problem: str, expected: bool) -> None:
    assert asks_for_decimal(problem) is expected


def test_pool_passes_the_flag_per_pair() -> None:
    config = VerifyConfig(n_workers=1)
    with VerifierPool(config) as pool:
        pairs = [(r"40\pi", "The answer is 125.663")] * 3
        verdicts = pool.verify_many(pairs, decimal_requested=[True, False, None])
        compared = pool.compare_many([(r"40\pi", "125.663")] * 2, decimal_requested=[False, True])
    assert [v.is_correct for v in verdicts] == [True, False, True]
    assert [v.is_correct for v in compared] == [False, True]
    with pytest.raises(ValueError, match="2 flags for 3 pairs"):
        VerifierPool(config).verify_many(pairs, decimal_requested=[True, False])


A_LINES = [
    ("Natalia sold 48/2 = 24 clips in May.\nA: 72", "72", "final_a_line"),
    ("Q: How many apples?\nA: 8 apples", "8", "a_line_with_unit"),
    ("A: Janet sells 9 eggs at $2 each, so she makes 18 dollars.", "18", "a_line_prose"),
    ("A: Let us think.\nShe has 5 apples.\nSo she has 8 apples now.", "8", "last_line_after_a"),
    ("A: 3 + 4 = 7\n\nQ: John has 12 eggs and eats 2. How many are left?\nA: 10", "3 + 4 = 7", "invented_next_question_cut"),
    ("A: She has 5 + 3 = 8 apples. The answer is 8.\nQ: And then?", "8", "answer_phrase_inside_a"),
    ("A: $\\frac{3}{4}$", "$\\frac{3}{4}$", "a_line_math_span"),
]


@pytest.mark.parametrize(("response", "expected"), [c[:2] for c in A_LINES], ids=[c[2] for c in A_LINES])
@pytest.mark.parametrize("mode", ["strict", "lenient"])
def test_a_line_extraction(response: str, expected: str, mode: str) -> None:
    assert extract_answer(response, mode=mode) == expected


def test_multiple_choice_options_are_not_an_a_line() -> None:
    assert extract_answer("Which is right?\nA: 3\nB: 4\nC: 5", mode="strict") is None


def test_dart_judges_a_decimal_by_what_the_problem_asks():
    from mathforge.generation.scripted import ScriptedGenerator
    from mathforge.records import Problem
    from mathforge.synthesis.dart import DartConfig, run_dart

    def verify_many(pairs, decimal_requested):
        return [verify_answer(r, s, decimal_requested=flag) for (r, s), flag in zip(pairs, decimal_requested)]

    exact = Problem(problem_id="exact", problem=r"Find the area. Express your answer in terms of $\pi$.", answer=r"40\pi", source="t")
    rounded = Problem(problem_id="rounded", problem="Find the area to the nearest thousandth.", answer=r"40\pi", source="t")
    generator = ScriptedGenerator(script=lambda prompt, index, params: r"The area is \boxed{125.664}.")
    result = run_dart(
        [exact, rounded],
        generator,
        verify_many,
        DartConfig(k_uniform=1, n_max=2),
        prompt_fn=lambda p: p.problem,
        decimal_requested=lambda p: asks_for_decimal(p.problem),
    )
    assert {q.problem_id: q.n_correct for q in result.query_info} == {"exact": 0, "rounded": 1}

"""compare_answers on already-extracted answers: (reference, candidate, expected) tables."""

from __future__ import annotations

import pytest

from mathforge.verify import VerifyConfig, compare_answers

EQUIVALENCE = [
    # numbers: exact, decimals, fractions, big integers
    ("7", "7", True, "same_integer"),
    ("7", "07", True, "leading_zero"),
    ("-0", "0", True, "negative_zero"),
    ("7", "+7", True, "explicit_plus"),
    ("3/4", "0.75", True, "fraction_vs_decimal"),
    (r"\frac{3}{4}", "0.75", True, "latex_fraction_vs_decimal"),
    (r"\dfrac{3}{4}", r"\tfrac34", True, "frac_variants"),
    (r"\frac{6}{8}", r"\frac{3}{4}", True, "unreduced_fraction"),
    ("2.50", "2.5", True, "trailing_decimal_zero"),
    (".25", "0.25", True, "leading_dot"),
    ("6.02e23", r"6.02 \times 10^{23}", True, "scientific_notation"),
    ("1.5e-3", "0.0015", True, "scientific_negative_exponent"),
    ("123456789012345678901234567890", "123456789012345678901234567891", False, "big_integers_stay_distinct"),
    (r"2^{64}", "18446744073709551616", True, "power_vs_integer"),
    (r"2^{64}", "18446744073709551617", False, "power_off_by_one"),
    ("30!", "30!+1", False, "factorial_off_by_one"),
    ("9", "9.01", False, "short_decimal_is_not_a_rounding_of_an_integer"),
    ("0.1", "0.10000000000000002", True, "float_printout_noise"),
    ("0.1", "0.1001", False, "short_decimals_compare_exactly"),
    # approximations of exact values
    (r"\sqrt{3}", "1.732", True, "truncated_root"),
    (r"\sqrt{3}", "1.7321", True, "rounded_root"),
    (r"\sqrt{3}", "1.733", False, "wrong_last_digit"),
    (r"\pi", "3.14", False, "too_few_digits"),
    (r"\frac{2}{3}", "0.6667", True, "rounded_repeating_decimal"),
    (r"\frac{2}{3}", "0.67", False, "two_digits_too_coarse"),
    (r"\frac{1}{8}", "0.1250", True, "terminating_decimal_exact"),
    (r"\frac{1}{8}", "0.1251", False, "terminating_value_not_rounded"),
    (r"20\pi", "62.83", True, "multiple_of_pi_truncated"),
    (r"e^{2}", "7.389056098930650", True, "machine_float_of_constant"),
    # thousands, currency, units
    ("48000", "48,000", True, "comma_thousands"),
    ("48000", "48{,}000", True, "braced_comma_thousands"),
    ("48000", r"48\,000", True, "thin_space_thousands"),
    ("48000", "48 000", True, "space_thousands"),
    ("5200000", r"5,\!200,\!000", True, "negative_space_thousands"),
    ("48000", "48, 000", False, "comma_space_is_a_list"),
    ("12.5", r"\$12.50", True, "dollar_sign"),
    ("12.5", r"12.50 \text{ dollars}", True, "dollar_word"),
    ("36", r"36 \text{ cm}^2", True, "text_unit_with_power"),
    ("36", r"36\mbox{ square meters}", True, "mbox_unit"),
    ("36", "36 square inches", True, "plain_unit_words"),
    ("8", "8hours", True, "glued_unit_word"),
    ("8", "8h", False, "glued_letter_is_a_variable"),
    ("8", "8 x", False, "spaced_single_letter_is_a_variable"),
    # percent (default policy: either reading)
    (r"45\%", "45", True, "percent_vs_number"),
    (r"45\%", "0.45", True, "percent_vs_fraction"),
    ("45", "45 percent", True, "percent_word"),
    (r"45\%", "4.5", False, "percent_wrong_scale"),
    # degrees, mixed numbers, bases, multiple choice, text
    (r"60^\circ", "60", True, "degree_sign_dropped"),
    (r"60^{\circ}", r"60\degree", True, "degree_spellings"),
    (r"\cos 60^\circ", r"\frac{1}{2}", True, "degrees_inside_trig"),
    (r"3\frac{1}{4}", "3.25", True, "latex_mixed_number"),
    ("3 1/4", r"\frac{13}{4}", True, "plain_mixed_number"),
    (r"3\frac{x}{4}", r"\frac{3x}{4}", True, "not_a_mixed_number"),
    ("121_3", "16", True, "base_three_value"),
    ("121_{3}", "121_3", True, "braced_base"),
    ("121_3", "121", True, "digits_without_base"),
    ("121_3", "122_3", False, "different_base_digits"),
    ("D", r"\text{(D)}", True, "choice_in_text_parens"),
    ("D", "(D)", True, "choice_in_parens"),
    ("D", r"\textbf{D}", True, "choice_in_bold"),
    ("D", "B", False, "different_choice"),
    (r"\text{Monday}", "monday", True, "case_insensitive_word"),
    (r"\text{even}", r"\text{odd}", False, "different_words"),
    ("E", "e", False, "capital_letter_is_not_euler"),
    ("odd", "dod", False, "words_are_not_products"),
    ("ab", "ba", True, "two_letters_are_a_product"),
    # expressions
    ("3x+2", "2+3x", True, "commuted_sum"),
    ("x^2-9", "(x-3)(x+3)", True, "factored"),
    (r"\frac{x^2-1}{x-1}", "x+1", True, "cancelled_fraction"),
    ("2^3 \\cdot 5", "2^3 5", True, "implicit_product"),
    (r"\sqrt{12}", r"2\sqrt{3}", True, "simplified_root"),
    (r"\frac{1}{\sqrt{3}}", r"\frac{\sqrt{3}}{3}", True, "rationalized"),
    (r"\cot x", r"\frac{\cos x}{\sin x}", True, "trig_identity"),
    (r"\log_3 81", "4", True, "logarithm"),
    ("x^2", "x^3", False, "different_power"),
    ("x", "|x|", False, "absolute_value_differs_for_negatives"),
    ("a+b", "A+B", False, "symbols_are_case_sensitive"),
    ("g(t)", "g(s)", False, "function_of_different_variable"),
    ("g(t)+1", "1+g(t)", True, "function_application_commutes"),
    # complex numbers
    ("3-4i", "-4i+3", True, "complex_commuted"),
    ("3-4i", "(2-i)^2", True, "complex_evaluated"),
    ("3-4i", "3+4i", False, "complex_conjugate"),
    ("2i", r"\sqrt{-4}", True, "imaginary_root"),
    # plus-minus
    (r"2 \pm \sqrt{5}", r"2+\sqrt{5}, 2-\sqrt{5}", True, "pm_expanded"),
    (r"2 \pm \sqrt{5}", r"2+\sqrt{5}", False, "pm_never_one_branch"),
    (r"\pm 4", "4", False, "pm_vs_positive_branch"),
    ("4", r"\pm 4", False, "branch_vs_pm"),
    # lists, sets, tuples, intervals
    ("2, 5, 9", "9, 2, 5", True, "unordered_list"),
    ("2, 5, 9", "2, 5", False, "missing_element"),
    ("2, 5", "2, 5, 5", True, "duplicates_ignored"),
    (r"\{a, b\}", r"\{b, a\}", True, "set_order"),
    ("(2, 5)", "(5, 2)", False, "tuple_order"),
    ("(2, 5)", "(2.0, 5)", True, "tuple_elementwise"),
    ("(1, 2), (3, 4)", "(3, 4), (1, 2)", True, "list_of_points"),
    ("(1, 2), (3, 4)", "(2, 1), (3, 4)", False, "point_order_matters"),
    ("[2, 5)", "[2, 5)", True, "half_open_interval"),
    ("[2, 5]", "2, 5", False, "interval_is_not_a_list"),
    ("(2, 5)", "2, 5", True, "parenthesized_pair_is_a_list_in_order"),
    ("[2, 5)", "(2, 5)", False, "closed_vs_open_end"),
    ("[2, 5]", "[2, 5)", False, "closed_vs_open_right"),
    (r"(-\infty, 3) \cup (4, \infty)", r"(4, \infty) \cup (-\infty, 3)", True, "union_order"),
    (r"(-\infty, 3] \cup [4, \infty)", r"(-\infty, 3) \cup (4, \infty)", False, "union_endpoints"),
    (r"(3, \infty)", r"(3, +\infty)", True, "plus_infinity"),
    # equations and assignments
    ("x = 4", "4", True, "assignment_vs_value"),
    ("4", "t = 4", True, "value_vs_assignment"),
    ("y = 3x - 1", "y = -1 + 3x", True, "line_rearranged"),
    ("y = 3x - 1", "3x - y - 1 = 0", True, "line_general_form"),
    ("y = 3x - 1", "6x - 2y - 2 = 0", True, "line_scaled"),
    ("3x - y - 1 = 0", "3x - y + 1 = 0", False, "parallel_line"),
    (r"x^2 + y^2 = 4", "4", False, "equation_is_not_its_constant"),
    ("g(x) = x^2 + 1", "x^2 + 1", True, "function_definition"),
    ("a = 2, b = 7", "2, 7", True, "named_values_in_order"),
    ("a = 2, b = 7", "b = 7, a = 2", True, "named_values_by_name"),
    ("a = 2, b = 7", "7, 2", False, "named_values_wrong_order"),
    ("x = 1, x = -4", "-4, 1", True, "repeated_name_is_a_solution_set"),
    ("m = 1, n = 2; m = 3, n = 4", "(3, 4), (1, 2)", True, "solution_tuples"),
    ("x = 2 + 3 = 5", "5", True, "chain_takes_last_value"),
    ("20", "4 \\cdot 5 = 20", True, "candidate_computation_result"),
    ("20", "4 \\cdot 5 = 21", False, "candidate_wrong_result"),
    (r"\frac{\sqrt{2}}{2} \approx 0.707", r"\frac{1}{\sqrt{2}}", True, "approximation_dropped"),
    (r"t \approx 2.45", "2.45", True, "approximate_value"),
    # inequalities as sets
    ("x > 2", "2 < x", True, "flipped_inequality"),
    ("x > 2", "-x < -2", True, "negated_inequality"),
    ("x > 2", r"x \ge 2", False, "strict_vs_non_strict"),
    (r"-1 \le x < 4", "[-1, 4)", True, "chain_vs_interval"),
    (r"x \in [-1, 4)", r"-1 \le x < 4", True, "membership_vs_chain"),
    (r"x^2 < 9", "(-3, 3)", True, "solved_quadratic_inequality"),
    (r"|x| \ge 2", r"(-\infty, -2] \cup [2, \infty)", True, "absolute_value_inequality"),
    ("x + y < 1", "y < 1 - x", True, "two_variable_inequality"),
    ("x + y < 1", "y > 1 - x", False, "two_variable_inequality_flipped"),
    # matrices and vectors
    (r"\begin{pmatrix} 2 & 0 \\ 1 & 3 \end{pmatrix}", r"\begin{bmatrix} 2 & 0 \\ 1 & 3 \end{bmatrix}", True, "pmatrix_vs_bmatrix"),
    (r"\begin{pmatrix} 2 & 0 \\ 1 & 3 \end{pmatrix}", r"\begin{pmatrix} 2 & 1 \\ 0 & 3 \end{pmatrix}", False, "transposed_matrix"),
    (r"\begin{pmatrix} \frac12 \\ -1 \end{pmatrix}", "(0.5, -1)", True, "column_vector_vs_tuple"),
    (r"\begin{pmatrix} 1 & 1 \\ 0 & 1 \end{pmatrix}^2", r"\begin{pmatrix} 1 & 2 \\ 0 & 1 \end{pmatrix}", True, "matrix_power"),
    # clock times and ratios
    ("9:15", r"9:15 \text{ a.m.}", True, "clock_morning"),
    ("21:15", "9:15 PM", True, "clock_afternoon"),
    ("3:5", "3:4", False, "ratio_differs"),
    # JSON double escaping and wrappers
    (r"\\frac{5}{6}", r"\frac{5}{6}", True, "double_escaped"),
    (r"\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}", True, "double_escaped_matrix"),
    ("$13$", r"\boxed{13}", True, "delimiters_and_box"),
    (r"\left[ 1, 3 \right)", "[1, 3)", True, "left_right"),
    ("5", "5.", True, "trailing_period"),
    ("5", "5\\", True, "trailing_backslash"),
]


@pytest.mark.parametrize(
    ("reference", "candidate", "expected"),
    [row[:3] for row in EQUIVALENCE],
    ids=[row[3] for row in EQUIVALENCE],
)
def test_equivalence(reference: str, candidate: str, expected: bool) -> None:
    verdict = compare_answers(reference, candidate)
    assert verdict.is_correct is expected, verdict


POLICIES = [
    (VerifyConfig(percent="fraction"), r"45\%", "45", False, "percent_fraction_rejects_number"),
    (VerifyConfig(percent="fraction"), r"45\%", "0.45", True, "percent_fraction_accepts_fraction"),
    (VerifyConfig(percent="number"), r"45\%", "0.45", False, "percent_number_rejects_fraction"),
    (VerifyConfig(percent="number"), r"45\%", "45", True, "percent_number_accepts_number"),
    (VerifyConfig(units="match"), r"7 \text{ cm}", r"7 \text{ m}", False, "units_must_match"),
    (VerifyConfig(units="match"), r"7 \text{ cm}", "7 centimeters", False, "units_spelled_differently"),
    (VerifyConfig(units="match"), r"7 \text{ meters}", "7 meter", True, "unit_plural"),
    (VerifyConfig(units="match"), r"7 \text{ cm}", "7", True, "missing_unit_accepted"),
    (VerifyConfig(units="ignore"), r"7 \text{ cm}", r"7 \text{ m}", True, "units_ignored"),
    (VerifyConfig(list_order="ordered"), "2, 5, 9", "9, 2, 5", False, "ordered_lists"),
    (VerifyConfig(list_order="ordered"), r"\{2, 5, 9\}", "9, 2, 5", True, "sets_stay_unordered"),
    (VerifyConfig(approx_min_digits=0), r"\sqrt{3}", "1.7321", False, "approximations_disabled"),
    (VerifyConfig(approx_min_digits=3), r"\frac{2}{3}", "0.667", True, "three_digit_approximations"),
    (VerifyConfig(rel_tol=0.0), "0.1", "0.10000000000000002", False, "no_float_tolerance"),
]


@pytest.mark.parametrize(
    ("config", "reference", "candidate", "expected"),
    [row[:4] for row in POLICIES],
    ids=[row[4] for row in POLICIES],
)
def test_policy(config: VerifyConfig, reference: str, candidate: str, expected: bool) -> None:
    assert compare_answers(reference, candidate, config).is_correct is expected


REASONS = [
    ("42", "42", True, "string_match", "string"),
    ("42", "42.0", True, "numeric_equal", "numeric"),
    ("42", "41", False, "numeric_mismatch", "numeric"),
    (r"\sqrt{2}", "1.4142", True, "approx_equal", "numeric"),
    ("x+1", "1+x", True, "symbolic_equal", "symbolic"),
    ("x+1", "x+2", False, "symbolic_mismatch", "symbolic"),
    (r"\text{blue}", r"\text{Blue}", True, "text_match", "text"),
    (r"\text{blue}", r"\text{red}", False, "text_mismatch", "text"),
    ("(1, 2)", "1", False, "structure_mismatch", "structure"),
    ("[0, 1]", "(0, 1]", False, "interval_mismatch", "structure"),
    ("42", "", None, "no_answer_found", "extraction"),
    ("", "42", None, "empty_reference", "extraction"),
    ("42", "2^{2^{2^{2^{2^{2}}}}}", None, "guard_power_tower", "guard"),
]


@pytest.mark.parametrize(
    ("reference", "candidate", "is_correct", "reason", "method"),
    REASONS,
    ids=[row[3] + "-" + str(row[2]) for row in REASONS],
)
def test_reason_and_method(reference: str, candidate: str, is_correct: bool | None, reason: str, method: str) -> None:
    verdict = compare_answers(reference, candidate)
    assert (verdict.is_correct, verdict.reason, verdict.method) == (is_correct, reason, method)
    assert verdict.extracted == candidate


def test_reference_comes_first() -> None:
    # A candidate equation is read as its result; a reference equation stays an equation.
    assert compare_answers("9", "2 + 7 = 9").is_correct is True
    assert compare_answers("2 + 7 = 9", "9").is_correct is False


def test_unparsable_candidate_is_unjudgeable() -> None:
    verdict = compare_answers("5", r"\frac{")
    assert verdict.is_correct is None
    assert verdict.reason == "unparsable"

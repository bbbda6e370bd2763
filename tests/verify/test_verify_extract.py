"""extract_answer on full responses, and verify_answer end to end."""

from __future__ import annotations

import pytest

from mathforge.verify import VerifyConfig, extract_answer, verify_answer

EXTRACTION = [
    # explicit answers: found in both modes
    (r"The area is $6 \cdot 7 = \boxed{42}$.", "42", "boxed"),
    (r"so \boxed{\frac{a}{\{b\}}} done", r"\frac{a}{\{b\}}", "boxed_nested_braces"),
    (r"\boxed{3} is wrong, it is \boxed{5}.", "5", "last_box_wins"),
    (r"Roots: $\boxed{2}$ and $\boxed{-7}$.", "2, -7", "adjacent_boxes_joined"),
    (r"First \boxed{2}. Much later, after a long detour through several steps and checks, we get \boxed{9}.", "9", "distant_boxes_not_joined"),
    (r"\fbox{12}", "12", "fbox"),
    (r"The answer is \boxed 7.", "7", "boxed_without_braces"),
    ("Natalia sold 48 clips.\n#### 72", "72", "gsm8k"),
    ("Final Answer: The final answer is $\\frac{2}{9}$. I hope it is correct.", r"$\frac{2}{9}$", "minerva_format"),
    ("Final Answer: The total is 31 dollars. I hope it is correct.", "31 dollars", "final_answer_prose"),
    ("So the answer is 64.", "64", "the_answer_is"),
    ("Answer: x = 3", "x = 3", "answer_colon"),
    (r"**Final Answer:** $y=2x$", "$y=2x$", "markdown_final_answer"),
    (r"Answer \[ \frac{1}{4} \]", r"\[ \frac{1}{4} \]", "answer_before_display_math"),
    (r"We get \boxed{15}. The answer is 16.", "16", "later_phrase_wins"),
    (r"The answer is $\boxed{8}$.", "8", "phrase_then_box"),
    (r"<think>Maybe \boxed{3}?</think> The answer is \boxed{4}.", "4", "after_think"),
    (r"<think>It must be \boxed{3}.</think>", "3", "only_think"),
    ("The answer is 10.<|im_end|><|im_start|>user\nThe answer is 99", "10", "stop_at_next_turn"),
    (r"\\boxed{\\frac{1}{2}}", r"\frac{1}{2}", "json_double_escaped"),
]


@pytest.mark.parametrize(("response", "expected"), [row[:2] for row in EXTRACTION], ids=[row[2] for row in EXTRACTION])
@pytest.mark.parametrize("mode", ["strict", "lenient"])
def test_explicit_answers(response: str, expected: str, mode: str) -> None:
    assert extract_answer(response, mode=mode) == expected


LENIENT_ONLY = [
    ("3x^2 - 1", "3x^2 - 1", "bare_expression"),
    ("12 square feet", "12 square feet", "bare_with_units"),
    ("Tuesday", "Tuesday", "bare_word"),
    ("$\\{1, 2\\}$", "$\\{1, 2\\}$", "bare_math_span"),
    ("We add them and get $x = 14$.", "x = 14", "last_math_span"),
    ("The train covers 120 km in 2 hours, so its speed is 60 km/h.", "60", "last_number"),
    ("While $t$ is unknown, it takes 3 hours in total", "3", "number_after_span_wins"),
    ("Each share is \\frac{3}{8} of the cake", r"\frac{3}{8}", "unwrapped_fraction"),
    ("Thus the product is **1,250**.", "1,250", "markdown_bold"),
    ("The price is 1,250.75 euros.", "1,250.75", "thousands_and_decimals"),
    ("The total is 45% of the budget", "45%", "percent_number"),
    ("Trying x2 and AB3C gives nothing.", None, "digits_inside_words_are_not_numbers"),
    ("总共有12个苹果", "12", "number_in_chinese_text"),
    ("x = 4 $ is not closed", "4", "unclosed_dollar"),
]


@pytest.mark.parametrize(("response", "expected"), [row[:2] for row in LENIENT_ONLY], ids=[row[2] for row in LENIENT_ONLY])
def test_lenient_fallbacks(response: str, expected: str | None) -> None:
    assert extract_answer(response, mode="lenient") == expected


@pytest.mark.parametrize(("response", "expected"), [row[:2] for row in LENIENT_ONLY], ids=[row[2] for row in LENIENT_ONLY])
def test_strict_requires_explicit_answer(response: str, expected: str | None) -> None:
    assert extract_answer(response, mode="strict") is None


def test_inline_math_does_not_cross_lines() -> None:
    assert extract_answer("Answer $\n 7 \n$", mode="strict") is None
    assert extract_answer("Answer $$\n 7 \n$$", mode="strict") == "$$\n 7 \n$$"


def test_strict_mode_does_not_take_a_tentative_answer_from_the_thinking() -> None:
    response = r"<think>Perhaps \boxed{3}.</think> I am not sure."
    assert extract_answer(response, mode="strict") is None
    assert extract_answer(response, mode="lenient") == "3"


def test_empty_box_is_no_answer() -> None:
    assert extract_answer(r"The answer is \boxed{}.", mode="strict") in (None, r"\boxed{}")
    assert verify_answer("7", r"The answer is \boxed{}.").is_correct is None


def test_unknown_mode_is_an_error() -> None:
    with pytest.raises(ValueError, match="mode"):
        extract_answer("42", mode="relaxed")


VERIFY = [
    ("72", "Natalia sold 48 + 24 = 72 clips.\n#### 72", True, "gsm8k_correct"),
    ("72", "She sold 48/2 = 24 clips in May.\n#### 74", False, "gsm8k_wrong"),
    (r"\frac{2}{9}", "Final Answer: The final answer is $2/9$. I hope it is correct.", True, "minerva_fraction"),
    ("(1, -2)", r"The intersection point is $\boxed{\left(1, -2\right)}$.", True, "point_with_left_right"),
    (r"x \in (0, 4]", r"So $0 < x \le 4$.", True, "interval_from_inequality"),
    (r"\$1,500", "She saves \\$1500 in total.", True, "money"),
    ("C", r"The correct option is \boxed{\text{(C)}}", True, "multiple_choice"),
    (r"\boxed{12}", r"Adding up, \boxed{12}.", True, "boxed_reference"),
    (r"The answer is clearly $\boxed{5}$ by symmetry.", "5", True, "reference_solution"),
]


@pytest.mark.parametrize(("reference", "response", "expected"), [row[:3] for row in VERIFY], ids=[row[3] for row in VERIFY])
def test_verify_answer(reference: str, response: str, expected: bool) -> None:
    verdict = verify_answer(reference, response)
    assert verdict.is_correct is expected, verdict


def test_verdict_carries_the_extracted_answer() -> None:
    verdict = verify_answer("3", r"We find $\boxed{3}$.")
    assert (verdict.is_correct, verdict.extracted, verdict.label) == (True, "3", "correct")


def test_no_answer_is_unjudgeable() -> None:
    verdict = verify_answer("3", "I could not solve this.", VerifyConfig(extraction="strict"))
    assert (verdict.is_correct, verdict.reason, verdict.label) == (None, "no_answer_found", "unjudgeable")

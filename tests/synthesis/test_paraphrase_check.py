"""paraphrase_check: numbers read as values, whatever their spelling; the k-solution decision."""

from collections import Counter
from fractions import Fraction

import pytest

from mathforge.synthesis.paraphrase_check import SolveAttempt, number_change, number_values, solve_outcome

F = Fraction

VALUES = [
    ("Buy 3 pens at $2.50 and 1,200 clips.", [F(5, 2), 3, 1200], "digits_decimals_thousands"),
    ("three pens, twenty-five clips and one hundred and five pins", [3, 25, 105], "number_words"),
    ("half of them, a third, two thirds, one-fourth, three quarters", [F(1, 2), F(1, 3), F(2, 3), F(1, 4), F(3, 4)], "fraction_words"),
    ("4 and a half hours, 3 1/2 cups, 1/2 and 2/1", [F(9, 2), F(7, 2), F(1, 2), 2], "mixed_and_digit_fractions"),
    ("25% of them and 40 percent of the rest", [F(1, 4), F(2, 5)], "percents_are_fractions"),
    ("twice as many, doubled, thrice, triple", [2, 2, 3, 3], "times_words"),
    ("a dozen eggs and 2 dozen rolls", [12, 24], "dozens"),
    ("-5 degrees, minus 3, negative two", [-5, -3, -2], "signs"),
    ("10-4 apples and 3-5 days", [10, 4, 3, 5], "subtraction_and_ranges_are_not_signs"),
    ("on the third day, the 3rd row, a second later, first", [], "ordinals_not_compared"),
]


@pytest.mark.parametrize(("text", "expected"), [c[:2] for c in VALUES], ids=[c[2] for c in VALUES])
def test_number_values(text, expected):
    assert number_values(text).values == Counter(F(value) for value in expected)


CHANGES = [
    ("Tom has 3 apples.", "Ann has three pears.", None, "digit_to_word"),
    ("Eat half of the 8 plums.", "Eat 1/2 of the eight plums.", None, "half_to_slash"),
    ("25% of 40 walk.", "A quarter of the 40 walk.", None, "percent_to_quarter"),
    ("A has 2 times as many as B.", "A has twice as many as B.", None, "times_to_twice"),
    ("One of the 4 boys left.", "A boy among the 4 left.", None, "pronoun_one_dropped"),
    ("Eat half of the 12 plums.", "Eat a third of the 12 plums.", "missing ['1/2'], added ['1/3']", "half_to_a_third"),
    ("It is 1/2 full.", "It is 2/1 full.", "missing ['1/2'], added ['2']", "fraction_inverted"),
    ("It is -5 degrees.", "It is 5 degrees.", "missing ['-5'], added ['5']", "sign_dropped"),
    ("Ann has 1 cat and 3 dogs.", "Ann has a cat and 3 dogs.", "missing ['1'], added []", "digit_one_must_stay"),
    ("Sam buys 3 packs.", "Sam buys four packs.", "missing ['3'], added ['4']", "wrong_number_word"),
]


@pytest.mark.parametrize(("original", "paraphrase", "expected"), [c[:3] for c in CHANGES], ids=[c[3] for c in CHANGES])
def test_number_change(original, paraphrase, expected):
    assert number_change(original, paraphrase) == expected


def test_solve_outcome_counts_reproductions():
    good = SolveAttempt(answer=19, reproduces=True)
    other = SolveAttempt(answer=5, reproduces=False)
    crashed = SolveAttempt(answer=None, reproduces=False, failure="program_error")
    assert solve_outcome([good, good, other], min_reproducing=2) is None
    assert solve_outcome([good, other, other], min_reproducing=2)[0] == "paraphrase_answer_changed"
    assert solve_outcome([good, crashed, crashed], min_reproducing=2)[0] == "solve_failed"
    assert solve_outcome([], min_reproducing=1) == ("solve_failed", "no independent solution ran: []")

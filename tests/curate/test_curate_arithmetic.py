"""The false-arithmetic reader: which equations it judges, which it leaves alone, and the filter's reason."""

from __future__ import annotations

import json

import pytest

from mathforge.curate import check_arithmetic, filter_samples
from mathforge.curate.arithmetic import false_equations, plain_arithmetic


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("So the answer is 7 + 50 = 12.", ["7 + 50 = 12"]),
        ("She has 80 - 14 = 58 left.", ["80 - 14 = 58"]),
        (r"Each costs $3 \times 4 = 13$ dollars.", ["3 * 4 = 13"]),
        ("Half is 900 ÷ 10 = 9.", ["900 / 10 = 9"]),
        ("He pays 2.5 * 4 = 10.5 in all.", ["2.5 * 4 = 10.5"]),
        ("Total 3 + 4 = 7 + 2 = 10.", ["7 + 2 = 10"]),
        ("They have 5 frogs + 2 frogs + 2 frogs = 10 frogs.", ["5 + 2 + 2 = 10"]),
        ("Stacy has 8(100)=804 berries.", ["8(100) = 804"]),
        ("60 students x 2/3 = 30 students take the bus.", ["60*2/3 = 30"]),
        ("The gain is 1,200 + 300 = 1,600 dollars.", ["1200 + 300 = 1600"]),
        (r"So \frac{1}{2} + 1 = 3.", ["(1/2) + 1 = 3"]),
    ],
    ids=[
        "sum", "difference", "latex-times", "unicode-divide", "decimal-product", "second-link", "units",
        "implicit-times", "x-as-times", "thousands", "latex-frac",
    ],
)
def test_false_equations_are_found(text: str, expected: list[str]) -> None:
    assert [str(e) for e in false_equations(text)] == expected


@pytest.mark.parametrize(
    "text",
    [
        "So 7 + 5 = 12 and 12 * 3 = 36, and 36 / 4 = 9.",
        "Each share is 10 / 3 = 3.33 dollars; 10 / 4 = 2 full boxes; 1/2 + 1 = 2 when rounded.",
        "x - 3 + 4 = 5, so x = 4.",
        "3x + 2 = 11 gives x = 3.",
        "25% * 80 = 20 people, 20 / 240 = 8.333...% of them.",
        "15% of 80 = (15/100)*80 = 12.",
        "2/3 of 30 + 6 = 26 people: (2/3 of 30) + 6, not 2/3 of 36.",
        "He runs 5 + 3 = 8 - 2 = 6 miles (a running total).",
        "She works 4 - 2 = 2 hours = 120 minutes.",
        "Lazlo has 4 pounds - 6 ounces = 58 ounces.",
        "Each dryer costs 25 x 4 = 100 cents = $1.",
        "He uses 7 boxes * 11 bolts = 77 bolts.",
        "Marco gets 28 / 1/5 = 28 * 5 = 140 cups.",
        "At 6:00+48 = 6:48 PM the sun sets.",
        "The answer is 12 = 7 + 5.",
        "```python\nprint(7 + 50)  # = 12? no\n```\nThe program prints 57.",
        "Therefore X = 9 because - 18/-2 = 9.",
        "We know 2^3 + 1 = 9 and 3! + 1 = 7.",
    ],
    ids=[
        "true-chain", "rounded", "variable-before", "variable-glued", "percent", "of-then-chain",
        "of-fraction", "running-total", "conversion", "mixed-units", "cents-to-dollars", "product-units",
        "divided-by-fraction", "clock-time", "bare-left", "code-block", "prose-word-as-unit", "power-factorial",
    ],
)
def test_what_cannot_be_read_as_false_is_left_alone(text: str) -> None:
    assert false_equations(text) == []


def test_plain_arithmetic_reads_latex_and_drops_code() -> None:
    assert plain_arithmetic(r"$3 \times 4 = 12$, \dfrac{1}{2} \div 2, 1,200 − 5") == "3 * 4 = 12, (1/2) / 2, 1200 - 5"
    assert plain_arithmetic("a\n```python\nx = 1 + 1\n```\nb") == "a\n \nb"


def test_check_arithmetic_and_the_filter_reason_with_its_detail(make_samples) -> None:
    false_row = "Ann has 7 apples and gets 5 more: 7 + 5 = 13. So \\boxed{12}."
    assert check_arithmetic(false_row) == (False, "false_arithmetic")
    assert check_arithmetic("7 + 5 = 12. So \\boxed{12}.") == (True, None)
    table = make_samples(
        {"sample_id": "ok", "response": "7 + 5 = 12. So \\boxed{12}.", "n_completion_tokens": 20},
        {"sample_id": "false", "response": false_row, "n_completion_tokens": 20},
    )
    result = filter_samples(table)
    assert result.counts == {"false_arithmetic": 1}
    assert result.kept.column("sample_id").to_pylist() == ["ok"]
    detail = json.loads(result.rejected.column("detail")[0].as_py())
    assert detail == {"equations": ["7 + 5 = 13 (left is 12)"]}
    assert filter_samples(table, checks=("truncated",)).counts == {}

"""Sample filters: each check's verdicts, the length bounds, and the filter stage's reasons and counts."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import ValidationError

from mathforge.curate import (
    boxed_contents,
    check_boxed_answers,
    check_code_errors,
    check_final_answer,
    check_language,
    check_length,
    check_truncated,
    filter_samples,
    length_bounds,
)

ENGLISH = "Tom starts with 3 apples and buys 4 more, so he has 3 + 4 = 7 apples in total. The answer is \\boxed{7}."
TRACEBACK = (
    'Traceback (most recent call last):\n  File "<stdin>", line 1, in <module>\nZeroDivisionError: division by zero'
)


def trace(*turns: tuple[str, str]) -> str:
    return json.dumps([{"role": role, "content": content} for role, content in turns])


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (r"So \boxed{3}. Let me check again. It is \boxed{4}.", (False, "multiple_boxed_answers")),
        (r"\boxed{\frac12}, that is \boxed{\dfrac{1}{2}}.", (True, None)),
        (r"The roots are \boxed{-2} and \boxed{1}.", (True, None)),
        (r"First \boxed{7}. Checking: 3 + 4 = 7, so the answer is \boxed{7}.", (True, None)),
        (r"The set is \boxed{\{1, 2\}}.", (True, None)),
        ("No box here, the answer is 7.", (True, None)),
    ],
    ids=["two-different", "same-value-spelled-twice", "adjacent-roots", "repeated", "nested-braces", "no-box"],
)
def test_check_boxed_answers(response: str, expected: tuple) -> None:
    assert check_boxed_answers(response) == expected


def test_boxed_contents_match_nested_braces() -> None:
    assert boxed_contents(r"\boxed{\frac{1}{2}} and \fbox {x^{2}} and \boxed{") == [r"\frac{1}{2}", "x^{2}"]


@pytest.mark.parametrize(
    ("response", "trace_json", "expected"),
    [
        (ENGLISH, None, (True, None)),
        ("Let me run it.\n" + TRACEBACK + "\nSo the answer is 7.", None, (False, "traceback_in_response")),
        (
            "x",
            trace(("assistant", "```python\nprint(1/0)\n```"), ("tool", TRACEBACK), ("assistant", "So \\boxed{7}")),
            (False, "code_error_in_trace"),
        ),
        (
            "x",
            trace(
                ("assistant", "code"),
                ("tool", TRACEBACK),
                ("assistant", "fix"),
                ("tool", "7"),
                ("assistant", "\\boxed{7}"),
            ),
            (True, None),
        ),
        (
            "```python\nx = 1/0\n```\n```output\nZeroDivisionError: division by zero\n```\nSo \\boxed{7}",
            None,
            (False, "code_error_in_trace"),
        ),
        ("```python\nprint(7)\n```\n```output\n7\n```\nSo \\boxed{7}", None, (True, None)),
    ],
    ids=[
        "plain-cot",
        "traceback-in-text",
        "trace-ends-on-error",
        "trace-error-corrected",
        "output-block-error",
        "output-block-ok",
    ],
)
def test_check_code_errors(response: str, trace_json: str | None, expected: tuple) -> None:
    assert check_code_errors(response, trace_json) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (ENGLISH, (True, None)),
        (r"$$x^2 - 5x + 6 = 0 \Rightarrow (x-2)(x-3) = 0$$ so $x \in \{2, 3\}$, \boxed{2, 3}", (True, None)),
        ("Let $\\alpha = 2\\pi r$ with α, β, γ, θ, π the angles of the triangle we consider here.", (True, None)),
        (
            "Tomás tiene 3 manzanas y compra 4 más, así que tiene 3 + 4 = 7 manzanas en total. La respuesta es 7.",
            (False, "language_mismatch"),
        ),
        (
            "Tom a 3 pommes et il en achète 4 de plus, donc il possède 3 + 4 = 7 pommes au total. La réponse est 7.",
            (False, "language_mismatch"),
        ),
        (
            "Tom hat 3 Äpfel und kauft 4 weitere, also hat er 3 + 4 = 7 Äpfel insgesamt. Die Antwort ist 7.",
            (False, "language_mismatch"),
        ),
        (
            "Tom ha 3 mele e ne compra altre 4, quindi ha 7 mele in totale. La risposta è 7.",
            (False, "language_mismatch"),
        ),
        ("Let y be the yellow marbles. 11+7+y=18+y. y/(18+y)=1/4 so 4y=18+y, 3y=18, y=6. #### 6", (True, None)),
        ("Том имеет 3 яблока и покупает ещё 4, поэтому у него 7 яблок. Ответ: 7.", (False, "language_mismatch")),
        ("汤姆有3个苹果，又买了4个，所以他一共有7个苹果。答案是7。", (False, "language_mismatch")),
        ("\\boxed{7}", (True, None)),
    ],
    ids=[
        "english",
        "math-only",
        "greek-letters",
        "spanish",
        "french",
        "german",
        "italian",
        "terse-english-with-variable-y",
        "russian",
        "chinese",
        "too-short-to-judge",
    ],
)
def test_check_language(text: str, expected: tuple) -> None:
    assert check_language(text) == expected


def test_simple_checks() -> None:
    assert check_truncated("length") == (False, "truncated") and check_truncated("stop") == (True, None)
    assert check_final_answer("We get 3 apples and 5 pears.") == (True, None)
    assert check_final_answer("We get 3 apples and 5 pears.", mode="strict") == (False, "missing_final_answer")
    assert check_final_answer("I am not sure what to do.") == (False, "missing_final_answer")
    assert check_length(5, low=10, high=100) == (False, "too_short")
    assert check_length(101, low=10, high=100) == (False, "too_long")
    with pytest.raises(ValueError, match="only 'en'"):
        check_language("text", language="fr")


def test_length_bounds_combine_absolute_bounds_and_log_fences() -> None:
    typical = np.array([100, 120, 150, 180, 200, 220, 250, 300] * 3)
    low, high = length_bounds(typical)
    assert 1 < low < 100 and 300 < high < 5000
    assert length_bounds(typical, min_tokens=60, max_tokens=400, outlier_iqr_k=None) == (60.0, 400.0)
    assert length_bounds(typical[:5]) == (1.0, float("inf"))  # too few rows for quartiles


def test_filter_samples_gives_the_first_failing_reason_and_counts(make_samples) -> None:
    rows = [{"sample_id": f"ok{i}", "n_completion_tokens": 150 + i} for i in range(20)]
    rows += [
        {"sample_id": "cut", "finish_reason": "length", "response": "So far 3 + 4", "n_completion_tokens": 152},
        {
            "sample_id": "none",
            "response": "I do not know how to solve this problem at all, sorry.",
            "n_completion_tokens": 150,
        },
        {
            "sample_id": "two",
            "response": "So \\boxed{3}. Let me check again. It is \\boxed{4}.",
            "n_completion_tokens": 151,
        },
        {
            "sample_id": "restated",  # boxes the question's own sum; the text concludes something else
            "response": "Ann has 7 apples and gets 5 more, so she has 51 apples. \\boxed{7 + 5}",
            "n_completion_tokens": 151,
        },
        {"sample_id": "long", "n_completion_tokens": 40_000},
    ]
    table = make_samples(*rows)
    result = filter_samples(table)
    reasons = {r["row_id"]: r["reason"] for r in result.rejected.to_pylist()}
    assert reasons == {
        "cut": "truncated",
        "none": "missing_final_answer",
        "two": "multiple_boxed_answers",
        "restated": "unevaluated_final_answer",
        "long": "too_long",
    }
    assert result.counts == {
        "missing_final_answer": 1,
        "multiple_boxed_answers": 1,
        "unevaluated_final_answer": 1,
        "too_long": 1,
        "truncated": 1,
    }
    assert result.kept.num_rows == 20
    long_detail = json.loads(
        result.rejected.filter(result.rejected.column("row_id").to_numpy(zero_copy_only=False) == "long")
        .column("detail")[0]
        .as_py()
    )
    assert long_detail["n_completion_tokens"] == 40_000 and long_detail["high"] < 40_000

    only_truncation = filter_samples(table, checks=("truncated",))
    assert only_truncation.counts == {"truncated": 1}


def test_filter_config_rejects_unknown_checks(make_samples) -> None:
    with pytest.raises(ValidationError):
        filter_samples(make_samples({}), checks=("spelling",))

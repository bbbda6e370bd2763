"""Normalization, answer structure and the config section."""

from __future__ import annotations

import pydantic
import pytest

from mathforge.verify import VerifyConfig, verifier_name
from mathforge.verify.normalize import clean_latex, split_units, unescape
from mathforge.verify.parse import Assign, Atom, Equation, Items, parse_answer

CLEAN = [
    (r"$\boxed{\dfrac{3}{5}}$", r"\frac{3}{5}", "delimiters_box_dfrac"),
    (r"\left( 1, \tfrac12 \right)", r"( 1, \frac{1}{2} )", "left_right_tfrac"),
    (r"\sqrt3 + \frac 1 4", r"\sqrt{3} + \frac{1}{4}", "unbraced_arguments"),
    (r"2{,}500", "2,500", "braced_comma"),
    (r"7,\!000,\!000", "7,000,000", "negative_thin_space"),
    (r"x \geq 2 \text{ and } x \neq 5", r"x \ge 2, x \ne 5", "relations_and_connector"),
    ("x >= 2 or x <= -2", r"x \ge 2, x \le -2", "ascii_relations_and_or"),
    (r"30^{\circ}", r"30^{\circ}", "degree_kept_canonical"),
    ("30°", r"30^{\circ}", "unicode_degree"),
    ("12 percent", r"12\%", "percent_word"),
    (r"\mathrm{B}", "B", "roman_letter"),
    (r"\text{(B)}", "B", "text_choice"),
    ("(B).", "B", "choice_with_period"),
    (r"\textbf{yes}", r"\text{yes}", "bold_word"),
    ("4.5.", "4.5", "trailing_period"),
    ("x = 1;", "x = 1", "trailing_semicolon"),
    ("3 − 2 × 4", r"3 - 2 \times 4", "unicode_operators"),
    (r"1\quad 2\qquad 3", "1 2 3", "quads"),
    ("**17**", "17", "markdown_bold"),
    ("x**2 + 1", "x^2 + 1", "python_power"),
]


@pytest.mark.parametrize(("raw", "clean"), [row[:2] for row in CLEAN], ids=[row[2] for row in CLEAN])
def test_clean_latex(raw: str, clean: str) -> None:
    assert clean_latex(raw) == clean


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (r"\\frac{1}{2} \\le 3", r"\frac{1}{2} \le 3"),
        (r"a \\ b", r"a \\ b"),
        (r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}", r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}"),
        (r"\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}"),
        (r"so \\boxed{4}.\n\nDone", "so \\boxed{4}.\n\nDone"),
        (r"x \neq 4", r"x \neq 4"),
    ],
    ids=["double_escaped", "row_break_kept", "single_escaped_matrix", "double_escaped_matrix", "literal_newlines", "neq_kept"],
)
def test_unescape(raw: str, expected: str) -> None:
    assert unescape(raw) == expected


@pytest.mark.parametrize(
    ("atom", "value", "unit"),
    [
        (r"12 \text{cm}", "12", "cm"),
        (r"12\text{ m}^{2}", "12", "m"),
        ("12 square meters", "12", "square meters"),
        ("12 apples", "12", "apples"),
        ("12km", "12km", ""),
        ("12kilometers", "12", "kilometers"),
        (r"2 \sin x", r"2 \sin x", ""),
        (r"\text{Evelyn}", r"\text{Evelyn}", ""),
    ],
)
def test_split_units(atom: str, value: str, unit: str) -> None:
    assert split_units(atom) == (value, unit)


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        ("1, 2", "list"),
        (r"\{1, 2\}", "set"),
        ("(1, 2)", "tuple"),
        ("[1, 2)", "tuple"),
        ("a = 1, b = 2", "mapping"),
        ("3:4", "ratio"),
    ],
)
def test_collections(answer: str, kind: str) -> None:
    reading = parse_answer(answer)[-1]
    assert isinstance(reading, Items) and reading.kind == kind


def test_thousands_are_one_number_and_decimal_comma_is_ambiguous() -> None:
    assert parse_answer("12,345") == (Atom("12345"),)
    assert len(parse_answer("3,14")) == 2


def test_names_label_values_and_other_sides_make_equations() -> None:
    assert isinstance(parse_answer("f(x) = 2x")[0], Assign)
    assert isinstance(parse_answer("|AB| = 4")[0], Assign)
    assert isinstance(parse_answer(r"\sin x = 1")[0], Equation)
    assert isinstance(parse_answer("2x + 1 = 0")[0], Equation)


def test_config_is_frozen_and_strict() -> None:
    config = VerifyConfig()
    with pytest.raises(pydantic.ValidationError):
        VerifyConfig(percentage="either")
    with pytest.raises(pydantic.ValidationError):
        VerifyConfig(extraction="loose")
    with pytest.raises(pydantic.ValidationError):
        config.timeout_s = 1.0  # type: ignore[misc]
    assert hash(config) == hash(VerifyConfig())
    assert VerifyConfig.model_validate_json(config.model_dump_json()) == config


def test_every_config_field_is_documented() -> None:
    assert all(field.description for field in VerifyConfig.model_fields.values())


def test_verifier_name_records_the_policy() -> None:
    assert verifier_name(VerifyConfig()) == "mathforge-verify/lenient"
    assert verifier_name(VerifyConfig(extraction="strict", list_order="ordered")) == "mathforge-verify/strict+list_order=ordered"
    assert verifier_name(VerifyConfig(timeout_s=1.0)) == "mathforge-verify/lenient"

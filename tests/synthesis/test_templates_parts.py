"""synthesis.templates, the parts that need no sandbox: slots, constraints, rendering, answers, reply parsing."""

import json
import random
from fractions import Fraction

import pytest

from mathforge.records import Problem, Template
from mathforge.synthesis.templates import (
    Constraint,
    SlotSpec,
    TemplateError,
    answer_type_of,
    format_answer,
    format_value,
    parse_decoupling,
    parse_paraphrase,
    parse_solve_program,
    parse_template,
    render_text,
)

SEED = Problem(
    problem_id="seed-1",
    problem="Tom has 12 apples and buys 7 more. How many apples does he have?",
    answer="19",
    source="test",
)


def make_template(**overrides) -> Template:
    fields = dict(
        template_id="t",
        seed_problem_id=None,
        template="Tom has {a} apples and buys {b} more. How many apples does he have?",
        program="def solve(a, b):\n    return a + b\n",
        slots_json=json.dumps(
            {"a": {"type": "integer", "min": 1, "max": 50}, "b": {"type": "integer", "min": 1, "max": 50}}
        ),
        constraints_json="[]",
        solution_template=None,
        answer_type="integer",
        origin="authored",
    )
    fields.update(overrides)
    return Template(**fields)


# Slots


def test_integer_slot_draws_every_value_of_its_stepped_domain_and_nothing_else():
    spec = SlotSpec(type="integer", min=10, max=30, step=5)
    rng = random.Random(0)
    drawn = {spec.draw(rng) for _ in range(500)}
    assert drawn == {10, 15, 20, 25, 30}
    assert all(isinstance(value, int) for value in drawn)
    assert spec.n_values == 5 and spec.contains(25) and not spec.contains(26) and not spec.contains(35)


def test_decimal_slot_has_fixed_places_and_renders_them():
    spec = SlotSpec(type="decimal", min=0.25, max=3.0, step=0.25, places=2)
    rng = random.Random(1)
    drawn = {spec.draw(rng) for _ in range(500)}
    assert drawn == {k / 4 for k in range(1, 13)}
    assert spec.render(1.5) == "1.50" and spec.contains(2.75) and not spec.contains(2.7)


def test_integral_floats_in_an_integer_slot_become_ints():
    spec = SlotSpec(type="integer", min=1.0, max=9.0, original=4.0)
    assert isinstance(spec.original, int) and isinstance(spec.min, int)


@pytest.mark.parametrize(
    "spec, message",
    [
        (dict(type="integer", min=5, max=1), "larger than max"),
        (dict(type="integer", min=1, max=5.5), "must be an integer"),
        (dict(type="integer", min=1, max=5, places=2), "decimal slots only"),
        (dict(type="decimal", min=0, max=1, step=0.001, places=2), "decimal places"),
        (dict(type="integer", min=1, max=5, step=0), "step must be positive"),
        (dict(type="fraction", min=1, max=5), "type"),
        (dict(type="integer", min=1, max=5, unit="cm"), "Extra inputs"),
    ],
    ids=[
        "min_above_max",
        "fractional_bound",
        "places_on_integer",
        "step_too_fine",
        "zero_step",
        "unknown_type",
        "unknown_key",
    ],
)
def test_invalid_slot_specs_are_refused(spec, message):
    with pytest.raises(ValueError, match=message):
        SlotSpec.model_validate(spec)


# Constraints


@pytest.mark.parametrize(
    "expression, values, expected",
    [
        ("a > b", {"a": 3, "b": 2}, True),
        ("a > b", {"a": 2, "b": 3}, False),
        ("total % (a + b) == 0", {"total": 20, "a": 3, "b": 2}, True),
        ("0 < a <= b < 10", {"a": 1, "b": 9}, True),
        ("0 < a <= b < 10", {"a": 1, "b": 10}, False),
        ("not (a == b) and (a > 1 or b > 1)", {"a": 1, "b": 2}, True),
        ("a ** 2 < 50", {"a": 7}, True),
        ("a / b == 1.5", {"a": 3, "b": 2}, True),
        ("a / b > 1", {"a": 3, "b": 0}, False),
        ("-a + 2.5 > 0", {"a": 2}, True),
        ("a * p + n < 20", {"a": 3, "p": 2.25, "n": 9.5}, True),
    ],
    ids=[
        "gt",
        "gt_false",
        "divisibility",
        "chain",
        "chain_false",
        "bool_ops",
        "small_power",
        "exact_division",
        "division_by_zero_is_false",
        "unary",
        "decimal_slots",
    ],
)
def test_constraints_evaluate_like_python(expression, values, expected):
    assert Constraint.compile(expression, set(values)).holds(values) is expected


@pytest.mark.parametrize(
    "expression",
    [
        "__import__('os').system('true')",
        "a.real > 0",
        "[a][0] > 0",
        "a ** b > 0",
        "a ** 1000 > 0",
        "(lambda: 1)() == 1",
        "c > 1",
        "'x' == 'x'",
        "a if b else a",
        "a in (1, 2)",
        "a is b",
        "a >",
        "True",
    ],
    ids=[
        "import",
        "attribute",
        "subscript",
        "power_of_slot",
        "huge_power",
        "lambda",
        "unknown_name",
        "string",
        "ternary",
        "in",
        "is",
        "syntax",
        "bool_literal",
    ],
)
def test_constraints_outside_the_whitelist_are_invalid(expression):
    with pytest.raises(TemplateError) as caught:
        Constraint.compile(expression, {"a", "b"})
    assert caught.value.reason == "invalid_constraint"


# Rendering and answers


def test_render_text_fills_slots_and_leaves_latex_braces_alone():
    text, unresolved = render_text(
        r"Area {a:.1f} \text{cm} and {b}", {"a": 2.0, "b": 3}, lambda name, value: f"<{value}>"
    )
    assert text == r"Area 2.0 \text{cm} and <3>"
    assert unresolved == ["cm"]


def test_render_text_reports_a_format_spec_that_does_not_fit_the_value():
    text, unresolved = render_text("{answer:.2f}", {"answer": "12.5"}, lambda name, value: str(value))
    assert text == "{answer:.2f}" and unresolved == ["answer:.2f"]


@pytest.mark.parametrize(
    "value, answer_type, expected",
    [
        (894, "integer", "894"),
        (894.0, "integer", "894"),
        (893.9999999999999, "integer", "894"),
        (2.5, "integer", None),
        (Fraction(10, 5), "integer", "2"),
        (Fraction(1, 3), "integer", None),
        (float("nan"), "integer", None),
        (float("inf"), "decimal", None),
        (12.500000000001, "decimal", "12.5"),
        (7.05, "decimal", "7.05"),
        (1 / 3, "decimal", None),
        (Fraction(1, 8), "decimal", None),
        (3.0, "decimal", "3"),
        (-4.25, "decimal", "-4.25"),
        (Fraction(6, 4), "fraction", "\\frac{3}{2}"),
        (Fraction(-3, 4), "fraction", "-\\frac{3}{4}"),
        (0.75, "fraction", "\\frac{3}{4}"),
        (4, "fraction", "4"),
    ],
    ids=lambda v: repr(v),
)
def test_format_answer_keeps_the_answer_type(value, answer_type, expected):
    assert format_answer(value, answer_type, max_places=2) == expected


@pytest.mark.parametrize(
    "answer, expected",
    [
        ("19", "integer"),
        ("1,200", "integer"),
        ("$15", "integer"),
        ("25\\%", "integer"),
        ("-3", "integer"),
        ("0.5", "decimal"),
        ("\\frac{3}{4}", "fraction"),
        ("-\\dfrac{1}{2}", "fraction"),
        ("3/4", "fraction"),
        ("x+1", None),
        ("\\sqrt{2}", None),
        ("1/0", None),
    ],
)
def test_answer_type_of_a_reference(answer, expected):
    assert answer_type_of(answer) == expected


def test_format_value_for_solution_texts():
    assert [format_value(v) for v in (12.0, 7.050000000000001, Fraction(1, 3), Fraction(5, 4), 3, "1/2")] == [
        "12",
        "7.05",
        "1/3",
        "1.25",
        "3",
        "1/2",
    ]


# Template structure


@pytest.mark.parametrize(
    "overrides, reason, key",
    [
        (dict(slots_json="{"), "invalid_slots", "slots"),
        (
            dict(
                slots_json=json.dumps(
                    {"a": {"type": "integer", "min": 9, "max": 1}, "b": {"type": "integer", "min": 1, "max": 2}}
                )
            ),
            "invalid_slots",
            "slots.a",
        ),
        (dict(template="Tom has {a} apples. How many?"), "slot_mismatch", "template"),
        (dict(constraints_json=json.dumps(["a > b", "open('x')"])), "invalid_constraint", "constraints.1"),
        (dict(program="def solve(a, b) return a"), "program_syntax_error", "program"),
        (dict(program="def compute(a, b):\n    return a + b\n"), "missing_solve", "program"),
        (dict(program="def solve(a):\n    return a\n"), "solve_signature_mismatch", "program"),
        (dict(program="def solve(a, b, c):\n    return a\n"), "solve_signature_mismatch", "program"),
    ],
    ids=[
        "bad_json",
        "bad_domain",
        "hidden_slot",
        "bad_constraint",
        "syntax",
        "no_solve",
        "missing_parameter",
        "extra_required_parameter",
    ],
)
def test_parse_template_names_reason_and_key(overrides, reason, key):
    with pytest.raises(TemplateError) as caught:
        parse_template(make_template(**overrides))
    assert caught.value.reason == reason
    assert caught.value.key.startswith(key)


def test_solve_with_kwargs_or_defaults_fits_the_slots():
    parse_template(make_template(program="def solve(**slots):\n    return slots['a'] + slots['b']\n"))
    parse_template(make_template(program="def solve(a, b, scale=1):\n    return (a + b) * scale\n"))


# Reply parsing

GOOD_JSON = {
    "template": "Tom has {a} apples and buys {b} more. How many apples does he have?",
    "slots": {
        "a": {"type": "int", "min": 1, "max": 50, "original": 12, "description": "apples"},
        "b": {"type": "integer", "min": 1, "max": 50, "original": 7},
    },
    "constraints": [],
}


def test_parse_decoupling_reads_fenced_json_and_python():
    code = "```python\ndef solve(a, b):\n    return a + b\n```\n"
    reply = f"Sure!\n```json\n{json.dumps(GOOD_JSON)}\n```\nAnd the code:\n{code}"
    template = parse_decoupling(reply, SEED)
    assert template.origin == "decoupled" and template.seed_problem_id == "seed-1" and template.answer_type == "integer"
    assert json.loads(template.slots_json)["a"] == {"type": "integer", "min": 1, "max": 50, "original": 12}
    assert parse_template(template).originals == {"a": 12, "b": 7}


def test_parse_decoupling_reads_bare_json_with_program_inside():
    reply = "Here it is: " + json.dumps({**GOOD_JSON, "program": "def solve(a, b):\n    return a + b"}) + " Done."
    assert "def solve" in parse_decoupling(reply, SEED).program


@pytest.mark.parametrize(
    "reply",
    [
        "I cannot do that.",
        '```json\n{"template": "x", "slots": \n```',
        json.dumps({**GOOD_JSON, "slots": ["a", "b"]}) + "\n```python\ndef solve(a, b):\n    return a + b\n```",
        json.dumps({**GOOD_JSON, "constraints": "a > b"}) + "\n```python\ndef solve(a, b):\n    return a + b\n```",
        json.dumps(GOOD_JSON),
    ],
    ids=["prose", "broken_json", "slots_not_object", "constraints_not_list", "no_program"],
)
def test_parse_decoupling_rejects_unusable_replies(reply):
    with pytest.raises(TemplateError) as caught:
        parse_decoupling(reply, SEED)
    assert caught.value.reason == "unparsable_reply"


def test_parse_paraphrase_keeps_the_text_and_ignores_a_program():
    assert parse_paraphrase("**Problem:** Mia has 12 shells.\n\n```python\ndef solve():\n    return 12\n```") == (
        "Mia has 12 shells."
    )
    assert parse_paraphrase("Mia has 12 shells.") == "Mia has 12 shells."
    with pytest.raises(TemplateError):
        parse_paraphrase("```python\ndef solve():\n    return 1\n```")


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ("I think it is 12.", "missing_program"),
        ("```python\ndef solve(:\n    return 1\n```", "program_syntax_error"),
        ("```python\ndef solve(a):\n    return a\n```", "solve_signature_mismatch"),
    ],
    ids=["no_block", "syntax_error", "takes_arguments"],
)
def test_parse_solve_program_rejects_unusable_replies(reply, reason):
    with pytest.raises(TemplateError) as caught:
        parse_solve_program(reply)
    assert caught.value.reason == reason
    assert parse_solve_program("```python\ndef solve():\n    return 12\n```").startswith("def solve")

"""instantiate: answer types, signs, dedup, bounded rejection sampling, failing programs."""

import json

import pytest

from mathforge.records import Template
from mathforge.sandbox import SandboxConfig, SandboxPool
from mathforge.synthesis.templates import TemplateSynthesisConfig, instantiate

CONFIG = TemplateSynthesisConfig()


def template(
    template_id="t",
    text="Share {a} sweets among {b} children. How many does each child get?",
    program="def solve(a, b):\n    return a / b\n",
    slots=None,
    constraints=(),
    answer_type="integer",
    solution=None,
    origin="authored",
):
    slots = slots or {"a": {"type": "integer", "min": 1, "max": 60}, "b": {"type": "integer", "min": 1, "max": 12}}
    return Template(
        template_id=template_id,
        seed_problem_id=None,
        template=text,
        program=program,
        slots_json=json.dumps(slots),
        constraints_json=json.dumps(list(constraints)),
        solution_template=solution,
        answer_type=answer_type,
        origin=origin,
    )


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(SandboxConfig(n_workers=2)) as pool:
        yield pool


def values_of(problem):
    return json.loads(problem.variables_json)


def test_true_division_gives_integers_never_894_point_0_and_fractions_are_rejected(pool):
    result = instantiate([template()], n_per_template=40, seed=0, pool=pool, config=CONFIG)
    assert result.per_template == {"t": 40}
    for problem in result.problems:
        v = values_of(problem)
        assert v["a"] % v["b"] == 0 and problem.answer == str(v["a"] // v["b"])
    wrong = [row for row in result.rejected if row.reason == "wrong_answer_type"]
    assert wrong and result.counts["wrong_answer_type"] == len(wrong)
    assert all(json.loads(json.dumps(row.detail)) for row in wrong)
    assert {row.row_id for row in wrong}.isdisjoint(p.problem_id for p in result.problems)


def test_decimal_answers_need_at_most_max_decimal_places(pool):
    money = template(
        text="{a} dollars are split between {b} people. How many dollars does each get?", answer_type="decimal"
    )
    result = instantiate([money], n_per_template=40, seed=1, pool=pool, config=CONFIG)
    assert result.problems and result.counts["wrong_answer_type"] > 0  # e.g. 10 / 3
    for problem in result.problems:
        v = values_of(problem)
        assert round(v["a"] / v["b"], 2) == v["a"] / v["b"] and float(problem.answer) == v["a"] / v["b"]
        assert not problem.answer.endswith(".0")
    three_places = instantiate(
        [money], n_per_template=40, seed=1, pool=pool, config=TemplateSynthesisConfig(max_decimal_places=3)
    )
    assert any(len(p.answer.split(".")[-1]) == 3 for p in three_places.problems if "." in p.answer)


def test_fraction_answers_are_latex_fractions(pool):
    share = template(
        program="from fractions import Fraction\n\ndef solve(a, b):\n    return Fraction(a, b)\n",
        answer_type="fraction",
    )
    result = instantiate([share], n_per_template=40, seed=2, pool=pool, config=CONFIG)
    assert result.per_template == {"t": 40} and not result.rejected
    assert any(p.answer.startswith("\\frac{") for p in result.problems)


def test_negative_answers_are_rejected_unless_the_seed_answer_was_negative(pool):
    difference = dict(
        text="It was {a} degrees and it fell by {b} degrees. What is the temperature now?",
        program="def solve(a, b):\n    return a - b\n",
    )
    counts = template(**difference)
    result = instantiate([counts], n_per_template=30, seed=3, pool=pool, config=CONFIG)
    assert result.per_template == {"t": 30} and len(result.problems) == 30 and result.counts["negative_answer"] > 0
    assert all(not p.answer.startswith("-") for p in result.problems)

    seeded = {
        "a": {"type": "integer", "min": 1, "max": 60, "original": 2},
        "b": {"type": "integer", "min": 1, "max": 12, "original": 5},
    }
    negative_seed = template(**difference, slots=seeded, origin="decoupled")
    result = instantiate([negative_seed], n_per_template=30, seed=3, pool=pool, config=CONFIG)
    assert "negative_answer" not in result.counts and any(p.answer.startswith("-") for p in result.problems)
    assert all(values_of(p) != {"a": 2, "b": 5} for p in result.problems)  # never the seed's own numbers


def test_a_small_domain_ends_with_what_exists_and_counts_repeated_draws(pool):
    tiny = template(
        text="Add {a} and {b}.",
        program="def solve(a, b):\n    return a + b\n",
        slots={"a": {"type": "integer", "min": 1, "max": 3}, "b": {"type": "integer", "min": 1, "max": 3}},
    )
    result = instantiate(
        [tiny], n_per_template=50, seed=4, pool=pool, config=TemplateSynthesisConfig(max_attempts_factor=4)
    )
    assert result.per_template == {"t": 9} and len({p.problem for p in result.problems}) == 9
    assert result.counts["duplicate_values"] == 50 * 4 - 9


def test_same_text_from_two_templates_is_kept_once(pool):
    tiny = dict(
        text="Add {a} and {b}.",
        program="def solve(a, b):\n    return a + b\n",
        slots={"a": {"type": "integer", "min": 1, "max": 3}, "b": {"type": "integer", "min": 1, "max": 3}},
    )
    result = instantiate(
        [template("first", **tiny), template("second", **tiny)], n_per_template=9, seed=5, pool=pool, config=CONFIG
    )
    assert result.per_template == {"first": 9, "second": 0}
    assert result.counts["duplicate_text"] == 9
    assert all(row.reason == "duplicate_text" and "same text as" in row.detail for row in result.rejected)


def test_unsatisfiable_constraints_reject_the_template_after_a_bounded_number_of_draws(pool):
    impossible = template(constraints=["a > 100"])
    sums = template("ok", text="Add {a} and {b}.", program="def solve(a, b):\n    return a + b\n")
    result = instantiate(
        [impossible, sums], n_per_template=10, seed=6, pool=pool, config=TemplateSynthesisConfig(max_attempts_factor=5)
    )
    assert [(row.row_id, row.reason) for row in result.rejected if row.reason == "constraint_unsatisfiable"] == [
        ("t", "constraint_unsatisfiable")
    ]
    assert result.counts["constraint_violated"] == 50
    assert result.per_template["t"] == 0 and result.per_template["ok"] == 10


def test_program_errors_are_per_instance(pool):
    fragile = template(text="Divide {a} by {b} minus 3.", program="def solve(a, b):\n    return a // (b - 3)\n")
    result = instantiate([fragile], n_per_template=60, seed=7, pool=pool, config=CONFIG)
    errors = [row for row in result.rejected if row.reason == "program_error"]
    assert errors and all("ZeroDivisionError" in row.detail for row in errors)
    assert result.per_template == {"t": 60}


def test_a_hanging_program_times_out_and_the_template_stops(pool):
    hanging = template(
        program="def solve(a, b):\n    while b == 7:\n        pass\n    return a * b\n", answer_type="integer"
    )
    result = instantiate([hanging], n_per_template=30, seed=8, pool=pool, config=TemplateSynthesisConfig(timeout_s=1.0))
    errors = [row for row in result.rejected if row.reason == "program_error"]
    assert any(row.detail.startswith("timeout") for row in errors)
    assert len(result.problems) + len(errors) >= 30


def test_a_broken_template_is_one_rejected_row(pool):
    broken = template(program="def solve(a):\n    return a\n")
    result = instantiate([broken], n_per_template=5, seed=9, pool=pool, config=CONFIG)
    assert [(row.row_id, row.reason) for row in result.rejected] == [("t", "solve_signature_mismatch")]
    assert result.per_template == {} and result.problems == []


def test_solution_placeholders_must_all_resolve(pool):
    solution = "Each child gets {a} ÷ {b} = {answer}. \\boxed{{answer}}"
    good = template(program="def solve(a, b):\n    return a // b\n", constraints=["a % b == 0"], solution=solution)
    result = instantiate([good], n_per_template=10, seed=10, pool=pool, config=CONFIG)
    assert all(p.solution.endswith(f"\\boxed{{{p.answer}}}") for p in result.problems) and len(result.problems) == 10

    typo = template(
        program="def solve(a, b):\n    return a // b\n", constraints=["a % b == 0"], solution="So {quotient}."
    )
    result = instantiate([typo], n_per_template=10, seed=10, pool=pool, config=CONFIG)
    assert result.problems == [] and {row.reason for row in result.rejected} == {"solution_placeholder_unresolved"}


def test_large_batches_print_only_the_values_instances_use(pool):
    program = (
        "def solve(a, b):\n    return {'x' * 40 + str(i): i for i in range(10)} | {'total': a + b, 'answer': a + b}\n"
    )
    wide = template(
        text="Use {a} and {b}.",
        program=program,
        slots={"a": {"type": "integer", "min": 1, "max": 1000}, "b": {"type": "integer", "min": 1, "max": 1000}},
        solution="{a} + {b} = {total}",
    )
    result = instantiate([wide], n_per_template=400, seed=11, pool=pool, config=CONFIG)
    assert result.per_template == {"t": 400} and not result.rejected
    assert all(p.solution.endswith(f"= {p.answer}") for p in result.problems)


def test_output_cut_by_the_sandbox_never_shifts_answers_onto_other_values(pool):
    # Every tenth case prints 30 kB: the sandbox keeps 64 kB of head and tail, and the lines in between are lost.
    noisy = template(
        text="Add {a} and {b}.",
        program="def solve(a, b):\n    if a % 10 == 0:\n        print('x' * 30_000)\n    return a + b\n",
        slots={"a": {"type": "integer", "min": 1, "max": 100}, "b": {"type": "integer", "min": 1, "max": 1}},
    )
    result = instantiate(
        [noisy], n_per_template=100, seed=12, pool=pool, config=TemplateSynthesisConfig(max_attempts_factor=3)
    )
    lost = [row for row in result.rejected if row.reason == "program_error"]
    assert lost and all(row.detail == "ok: no output for this case" for row in lost)
    assert all(p.answer == str(values_of(p)["a"] + 1) for p in result.problems)
    assert len(result.problems) + len(lost) == 3 * 100 - result.counts["duplicate_values"]  # every distinct draw ran


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="n_per_template"):
        instantiate([template()], n_per_template=0, seed=0, pool=None, config=CONFIG)

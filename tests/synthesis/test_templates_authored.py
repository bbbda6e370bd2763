"""Authored templates (configs/templates): loading, and >= 100 valid instances each, answers recomputed here.

The answers are recomputed by a second implementation written in this file,
independently of the templates' programs, from the instances' variables; the
checks also assert that each instance satisfies what the problem text
promises (exact shares, whole tiles, a score of at most 100, ...).
"""

import json
import re
from collections import Counter
from fractions import Fraction
from pathlib import Path

import pytest
import yaml

from mathforge.records import Problem
from mathforge.sandbox import SandboxConfig, SandboxPool
from mathforge.synthesis.template_files import TemplateFileError, load_authored_templates, load_template_file
from mathforge.synthesis.templates import TemplateSynthesisConfig, instantiate

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "configs" / "templates"
N_INSTANCES = 100


def _rates_two_legs(v):
    return v["speed1"] * v["hours1"] + v["speed2"] * v["hours2"]


def _percent_discount(v):
    return Fraction(v["price"]) * (100 - v["percent"]) / 100 + v["fee"]


def _ratio_share(v):
    return Fraction(v["total"] * (v["a"] - v["b"]), v["a"] + v["b"])


def _ages_multiple(v):
    # Try every year: the first x with mother + x == k * (son + x).
    return next(x for x in range(0, 200) if v["mother"] + x == v["k"] * (v["son"] + x))


def _geometry_fence_cost(v):
    return (v["length"] + v["length"] + v["width"] + v["width"]) * v["cost"]


def _geometry_floor_tiles(v):
    assert v["length"] % v["side"] == 0 and v["width"] % v["side"] == 0, "tiles would not fit exactly"
    return Fraction(v["length"] * v["width"], v["side"] ** 2)


def _money_change(v):
    cents = v["bill"] * 100 - v["pens"] * round(v["pen_price"] * 100) - round(v["notebook"] * 100)
    assert cents > 0, "not enough money"
    return Fraction(cents, 100)


def _time_practice_hours(v):
    return Fraction((v["weekday"] * 5 + v["weekend"] * 2) * v["weeks"], 60)


def _work_two_pipes(v):
    return Fraction(v["a"] * v["b"], v["a"] + v["b"])


def _average_next_score(v):
    score = v["target"] * (v["n"] + 1) - v["avg"] * v["n"]
    assert 0 <= score <= 100, "impossible test score"
    return score


def _fractions_library(v):
    assert Fraction(v["num"], v["den"]).denominator == v["den"], "fraction not in lowest terms"
    other = v["books"] - Fraction(v["books"] * v["num"], v["den"])
    return other * v["percent"] / 100


def _proportion_recipe(v):
    return Fraction(v["flour"] * v["guests"], v["servings"])


EXPECTED = {
    "rates_two_legs": _rates_two_legs,
    "percent_discount": _percent_discount,
    "ratio_share": _ratio_share,
    "ages_multiple": _ages_multiple,
    "geometry_fence_cost": _geometry_fence_cost,
    "geometry_floor_tiles": _geometry_floor_tiles,
    "money_change": _money_change,
    "time_practice_hours": _time_practice_hours,
    "work_two_pipes": _work_two_pipes,
    "average_next_score": _average_next_score,
    "fractions_library": _fractions_library,
    "proportion_recipe": _proportion_recipe,
}


def parse_answer(answer: str) -> Fraction:
    match = re.fullmatch(r"(-?)\\frac\{(\d+)\}\{(\d+)\}", answer)
    if match:
        return Fraction(int(match.group(2)), int(match.group(3))) * (-1 if match.group(1) else 1)
    assert re.fullmatch(r"-?\d+(\.\d+)?", answer), f"malformed answer {answer!r}"
    return Fraction(answer)


@pytest.fixture(scope="module")
def templates():
    return load_authored_templates(TEMPLATES_DIR)


@pytest.fixture(scope="module")
def result(templates):
    with SandboxPool(SandboxConfig(n_workers=2)) as pool:
        return instantiate(templates, n_per_template=N_INSTANCES, seed=7, pool=pool, config=TemplateSynthesisConfig())


def test_at_least_ten_templates_cover_the_grade_school_topics(templates):
    topics = {yaml.safe_load(path.read_text())["topic"] for path in TEMPLATES_DIR.glob("*.yaml")}
    assert len(templates) >= 10
    assert {"rates", "percentages", "ratios", "ages", "geometry", "money", "time"} <= topics
    assert set(EXPECTED) == {t.template_id for t in templates}, "every template needs a second implementation here"
    assert all(t.origin == "authored" and t.solution_template for t in templates)


def test_every_template_yields_enough_distinct_instances(result, templates):
    assert result.per_template == {t.template_id: N_INSTANCES for t in templates}
    by_template = Counter(p.template_id for p in result.problems)
    assert set(by_template.values()) == {N_INSTANCES}
    assert len({p.problem for p in result.problems}) == len(result.problems)
    assert len({(p.template_id, p.variables_json) for p in result.problems}) == len(result.problems)
    assert len({p.problem_id for p in result.problems}) == len(result.problems)
    assert not result.rejected, [r.reason for r in result.rejected][:5]


def test_every_answer_matches_an_independent_implementation(result, templates):
    types = {t.template_id: t.answer_type for t in templates}
    for problem in result.problems:
        values = json.loads(problem.variables_json)
        expected = Fraction(EXPECTED[problem.template_id](values))
        assert parse_answer(problem.answer) == expected, (problem.template_id, values, problem.answer)
        if types[problem.template_id] == "integer":
            assert re.fullmatch(r"\d+", problem.answer), problem.answer
        if types[problem.template_id] == "decimal":
            assert re.fullmatch(r"\d+(\.\d?[1-9])?", problem.answer), problem.answer  # <= 2 places, no trailing 0


def test_instances_carry_text_solution_program_and_lineage(result):
    for problem in result.problems:
        assert isinstance(problem, Problem)
        assert problem.source == f"template:{problem.template_id}" and problem.seed_problem_id is None
        assert "def solve" in problem.program
        assert not re.search(r"\{[A-Za-z_]\w*(:[^{}]*)?\}", problem.problem + problem.solution), problem.solution
        assert f"\\boxed{{{problem.answer}}}" in problem.solution
        for value in json.loads(problem.variables_json).values():
            assert (str(value) if isinstance(value, int) else f"{value:.2f}") in problem.problem


def test_same_seed_same_instances_other_seed_other_instances(templates, result):
    subset = [t for t in templates if t.template_id in ("ratio_share", "money_change")]
    with SandboxPool(SandboxConfig(n_workers=2)) as pool:
        again = instantiate(subset, n_per_template=N_INSTANCES, seed=7, pool=pool, config=TemplateSynthesisConfig())
        other = instantiate(subset, n_per_template=N_INSTANCES, seed=8, pool=pool, config=TemplateSynthesisConfig())
    assert again.problems == [p for p in result.problems if p.template_id in ("ratio_share", "money_change")]
    assert {p.problem_id for p in other.problems} != {p.problem_id for p in again.problems}


def test_template_filter_by_id_keeps_the_requested_order():
    chosen = load_authored_templates(TEMPLATES_DIR, ids=["money_change", "ages_multiple"])
    assert [t.template_id for t in chosen] == ["money_change", "ages_multiple"]
    with pytest.raises(TemplateFileError, match="no_such_template"):
        load_authored_templates(TEMPLATES_DIR, ids=["no_such_template"])


GOOD_FILE = (TEMPLATES_DIR / "ratio_share.yaml").read_text()


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda text: text.replace("  a: {type: integer, min: 2, max: 9}", "  a: {type: integer, min: two, max: 9}"),
            r"ratio_share\.yaml: slots\.a\.min",
        ),
        (lambda text: text + "difficulty: easy\n", r"ratio_share\.yaml: difficulty: Extra inputs"),
        (
            lambda text: text.replace("  - a > b\n", "  - a > b\n  - import os\n"),
            r"ratio_share\.yaml: constraints\.1: invalid_constraint",
        ),
        (
            lambda text: text.replace("def solve(total, a, b):", "def solve(total, a):"),
            r"ratio_share\.yaml: program: solve_signature_mismatch",
        ),
        (lambda text: text.replace("answer_type: integer", "answer_type: complex"), r"ratio_share\.yaml: answer_type"),
        (lambda text: text.replace("{total} marbles", "some marbles"), r"ratio_share\.yaml: template: slot_mismatch"),
        (lambda text: text.replace("id: ratio_share", "id: Ratio Share"), r"ratio_share\.yaml: id"),
        (lambda text: text.replace("slots:", "slots: [\n"), r"ratio_share\.yaml: invalid YAML"),
    ],
    ids=[
        "wrong_type",
        "unknown_key",
        "bad_constraint",
        "signature",
        "answer_type",
        "hidden_slot",
        "bad_id",
        "bad_yaml",
    ],
)
def test_a_bad_template_file_is_an_error_naming_file_and_key(tmp_path, edit, message):
    path = tmp_path / "ratio_share.yaml"
    path.write_text(edit(GOOD_FILE))
    with pytest.raises(TemplateFileError, match=message):
        load_template_file(path)


def test_two_files_with_one_id_is_an_error(tmp_path):
    (tmp_path / "a.yaml").write_text(GOOD_FILE)
    (tmp_path / "b.yaml").write_text(GOOD_FILE)
    with pytest.raises(TemplateFileError, match=r"b\.yaml: id: 'ratio_share' is already used by .*a\.yaml"):
        load_authored_templates(tmp_path)


def test_a_missing_directory_is_an_error(tmp_path):
    with pytest.raises(TemplateFileError, match="template directory not found"):
        load_authored_templates(tmp_path / "missing")

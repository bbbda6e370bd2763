"""LLM decoupling, scripted replies: good templates accepted, broken or answer-changing ones rejected with a reason."""

import json
from fractions import Fraction

import pytest

from mathforge.generation.scripted import ScriptedGenerator
from mathforge.records import Problem
from mathforge.sandbox import SandboxConfig, SandboxPool
from mathforge.synthesis.templates import (
    CallConfig,
    DecoupleConfig,
    TemplateSynthesisConfig,
    decouple,
    instantiate,
    parse_template,
    validate_template,
)
from mathforge.verify import VerifyConfig


def reply(template, slots, program, constraints=()):
    body = json.dumps({"template": template, "slots": slots, "constraints": list(constraints)}, indent=2)
    return f"Here is the template.\n```json\n{body}\n```\n\n```python\n{program}\n```\n"


def integer(original, low=1, high=100):
    return {"type": "integer", "min": low, "max": high, "original": original}


# seed text, reference answer, scripted reply, expected outcome ('accepted' or the rejection reason)
CASES = {
    "good": (
        "Tom has 12 apples and buys 7 more. How many apples does he have now?",
        "19",
        reply(
            "Tom has {apples} apples and buys {more} more. How many apples does he have now?",
            {"apples": integer(12), "more": integer(7)},
            "def solve(apples, more):\n    return apples + more",
        ),
        "accepted",
    ),
    "good_decimal_money": (
        "A notebook costs $2.50 and a pen costs $1.25. How much do 3 notebooks and 2 pens cost in dollars?",
        "10",
        reply(
            "A notebook costs ${notebook} and a pen costs ${pen}. "
            "How much do {n_books} notebooks and {n_pens} pens cost in dollars?",
            {
                "notebook": {"type": "decimal", "min": 0.5, "max": 9.5, "step": 0.25, "places": 2, "original": 2.5},
                "pen": {"type": "decimal", "min": 0.25, "max": 4, "step": 0.25, "places": 2, "original": 1.25},
                "n_books": integer(3, 1, 9),
                "n_pens": integer(2, 1, 9),
            },
            "def solve(notebook, pen, n_books, n_pens):\n    return n_books * notebook + n_pens * pen",
        ),
        "accepted",
    ),
    "answer_changing": (
        "Mia had 30 stickers and gave 8 to her brother. How many stickers does Mia have left?",
        "22",
        reply(
            "Mia had {stickers} stickers and gave {given} to her brother. How many stickers does Mia have left?",
            {"stickers": integer(30), "given": integer(8)},
            "def solve(stickers, given):\n    return stickers + given",
            ["given < stickers"],
        ),
        "answer_mismatch",
    ),
    "prose_reply": (
        "A box holds 6 eggs. How many eggs are in 9 boxes?",
        "54",
        "The template is: A box holds {eggs} eggs. How many eggs are in {boxes} boxes? The answer is eggs times boxes.",
        "unparsable_reply",
    ),
    "different_text": (
        "A baker makes 40 rolls and sells 25 of them. How many rolls are left?",
        "15",
        reply(
            "A farmer grows {made} carrots and eats {sold}. How many carrots remain?",
            {"made": integer(40), "sold": integer(25)},
            "def solve(made, sold):\n    return made - sold",
            ["sold < made"],
        ),
        "text_mismatch",
    ),
    "random_noise": (
        "Each of 5 friends brings 4 cookies. How many cookies are there in all?",
        "20",
        reply(
            "Each of {friends} friends brings {cookies} cookies. How many cookies are there in all?",
            {"friends": integer(5, 2, 20), "cookies": integer(4, 1, 12)},
            "import random\n\ndef solve(friends, cookies):\n"
            "    return {'answer': friends * cookies, 'check': random.random()}",
        ),
        "nondeterministic",
    ),
    "no_solve": (
        "A rope is 18 metres long and is cut into pieces of 3 metres. How many pieces are there?",
        "6",
        reply(
            "A rope is {length} metres long and is cut into pieces of {piece} metres. How many pieces are there?",
            {"length": integer(18), "piece": integer(3, 1, 10)},
            "def compute(length, piece):\n    return length // piece",
            ["length % piece == 0"],
        ),
        "missing_solve",
    ),
    "crashing_program": (
        "Sara reads 15 pages a day. How many pages does she read in 6 days?",
        "90",
        reply(
            "Sara reads {pages} pages a day. How many pages does she read in {days} days?",
            {"pages": integer(15), "days": integer(6, 1, 30)},
            "def solve(pages, days):\n    return pages * weeks",
        ),
        "program_error",
    ),
    "seed_breaks_constraints": (
        "A class has 28 students and 13 of them are girls. How many boys are there?",
        "15",
        reply(
            "A class has {students} students and {girls} of them are girls. How many boys are there?",
            {"students": integer(28), "girls": integer(13)},
            "def solve(students, girls):\n    return students - girls",
            ["girls > students"],
        ),
        "original_violates_constraints",
    ),
    "unsafe_constraint": (
        "A pen costs 3 dollars. How many dollars do 11 pens cost?",
        "33",
        reply(
            "A pen costs {price} dollars. How many dollars do {pens} pens cost?",
            {"price": integer(3, 1, 20), "pens": integer(11, 1, 50)},
            "def solve(price, pens):\n    return price * pens",
            ["__import__('os').system('echo owned') == 0"],
        ),
        "invalid_constraint",
    ),
    "float_answer": (
        "A car uses 8 litres of fuel for every 100 km. How many litres does it use for 250 km?",
        "20",
        reply(
            "A car uses {litres} litres of fuel for every 100 km. How many litres does it use for {km} km?",
            {"litres": integer(8, 2, 20), "km": integer(250, 50, 900)},
            "def solve(litres, km):\n    return km / litres",
        ),
        "wrong_answer_type",
    ),
    "no_original": (
        "There are 9 birds on a wire and 4 fly away. How many birds are still on the wire?",
        "5",
        reply(
            "There are {birds} birds on a wire and {away} fly away. How many birds are still on the wire?",
            {"birds": integer(9), "away": {"type": "integer", "min": 1, "max": 50}},
            "def solve(birds, away):\n    return birds - away",
            ["away < birds"],
        ),
        "missing_original",
    ),
    "hidden_slot": (
        "Leo saves 7 dollars a week for 5 weeks. How many dollars does he save?",
        "35",
        reply(
            "Leo saves {amount} dollars a week for 5 weeks. How many dollars does he save?",
            {"amount": integer(7), "weeks": integer(5)},
            "def solve(amount, weeks):\n    return amount * weeks",
        ),
        "slot_mismatch",
    ),
}
UNSUPPORTED = Problem(problem_id="algebra", problem="Simplify x + x.", answer="2x", source="test")


def seed(name: str) -> Problem:
    text, answer, _, _ = CASES[name]
    return Problem(problem_id=name, problem=text, answer=answer, source="test")


def scripted(replies_by_text: dict[str, list[str]], calls: list[str] | None = None) -> ScriptedGenerator:
    def script(prompt: str, index: int, params):
        for text, replies in replies_by_text.items():
            if prompt.endswith(f"Problem: {text}\nAnswer: {answer_of(text)}"):
                if calls is not None:
                    calls.append(text)
                return replies[index]
        raise AssertionError(f"unexpected prompt: {prompt[-200:]}")

    return ScriptedGenerator(script=script)


def answer_of(text: str) -> str:
    return next(answer for seed_text, answer, _, _ in CASES.values() if seed_text == text)


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(SandboxConfig(n_workers=2)) as pool:
        yield pool


@pytest.fixture(scope="module")
def result(pool):
    calls: list[str] = []
    generator = scripted({text: [reply_text] for text, _, reply_text, _ in CASES.values()}, calls)
    problems = [seed(name) for name in CASES] + [UNSUPPORTED]
    outcome = decouple(problems, generator, config=TemplateSynthesisConfig(), pool=pool, verify_config=VerifyConfig())
    return outcome, calls


def test_each_scripted_reply_gets_the_expected_outcome(result):
    outcome, _ = result
    accepted = {template.seed_problem_id: "accepted" for template in outcome.templates}
    rejected = {row.problem_id: row.reason for row in outcome.rejected}
    assert not set(accepted) & set(rejected)
    assert {**accepted, **rejected} == {
        **{name: expected for name, (_, _, _, expected) in CASES.items()},
        "algebra": "unsupported_answer_type",
    }


def test_rejections_are_rows_with_details_and_counted(result):
    outcome, _ = result
    assert sum(outcome.counts.values()) == len(outcome.rejected) == len(CASES) - 2 + 1
    by_seed = {row.problem_id: row for row in outcome.rejected}
    assert by_seed["answer_changing"].row_id == "answer_changing#0"
    assert by_seed["answer_changing"].stage == "template_decouple"
    assert "38" in by_seed["answer_changing"].detail and "22" in by_seed["answer_changing"].detail
    assert "similarity" in by_seed["different_text"].detail
    assert "NameError" in by_seed["crashing_program"].detail
    assert "31.25" in by_seed["float_answer"].detail


def test_seeds_without_a_plain_number_answer_never_reach_the_model(result):
    _, calls = result
    assert len(calls) == len(CASES) and UNSUPPORTED.problem not in calls


def test_accepted_templates_keep_seed_lineage_and_types(result):
    outcome, _ = result
    by_seed = {t.seed_problem_id: t for t in outcome.templates}
    assert by_seed["good"].origin == "decoupled" and by_seed["good"].answer_type == "integer"
    assert by_seed["good_decimal_money"].answer_type == "integer"  # the seed's answer "10" is an integer
    assert by_seed["good"].template_id.startswith("dec-")
    assert parse_template(by_seed["good"]).originals == {"apples": 12, "more": 7}


def test_accepted_template_instantiates_with_computed_answers_never_the_seed_itself(result, pool):
    outcome, _ = result
    good = next(t for t in outcome.templates if t.seed_problem_id == "good")
    made = instantiate([good], n_per_template=50, seed=0, pool=pool, config=TemplateSynthesisConfig())
    assert made.per_template == {good.template_id: 50}
    for problem in made.problems:
        values = json.loads(problem.variables_json)
        assert problem.answer == str(values["apples"] + values["more"])
        assert problem.seed_problem_id == "good" and problem.source == f"template:{good.template_id}"
        assert problem.problem != CASES["good"][0]
        assert problem.solution is None


def test_decimal_seed_template_keeps_integer_answers_only(result, pool):
    outcome, _ = result
    money = next(t for t in outcome.templates if t.seed_problem_id == "good_decimal_money")
    made = instantiate([money], n_per_template=30, seed=0, pool=pool, config=TemplateSynthesisConfig())
    assert made.problems and all(problem.answer.isdigit() for problem in made.problems)
    for problem in made.problems:
        v = json.loads(problem.variables_json)
        exact = v["n_books"] * Fraction(str(v["notebook"])) + v["n_pens"] * Fraction(str(v["pen"]))
        assert Fraction(problem.answer) == exact
    assert made.counts.get("wrong_answer_type", 0) > 0  # e.g. 2 x $1.25 + 1 x $0.75: not a whole number of dollars


def test_first_valid_reply_wins_and_later_valid_ones_are_surplus(pool):
    text, answer, good_reply, _ = CASES["good"]
    broken = '```json\n{"template": \n```'
    generator = scripted({text: [broken, good_reply, good_reply.replace("apples + more", "more + apples")]})
    config = TemplateSynthesisConfig(decouple=DecoupleConfig(params=CallConfig(n=3)))
    outcome = decouple([seed("good")], generator, config=config, pool=pool, verify_config=VerifyConfig())
    assert len(outcome.templates) == 1 and "apples + more" in outcome.templates[0].program
    assert [(row.row_id, row.reason) for row in outcome.rejected] == [
        ("good#0", "unparsable_reply"),
        ("good#2", "surplus_template"),
    ]


def test_a_reply_cut_at_max_tokens_is_truncated_not_just_unparsable(pool):
    text, _, good_reply, _ = CASES["good"]
    config = TemplateSynthesisConfig(decouple=DecoupleConfig(params=CallConfig(max_tokens=12)))
    outcome = decouple(
        [seed("good")], scripted({text: [good_reply]}), config=config, pool=pool, verify_config=VerifyConfig()
    )
    assert outcome.templates == [] and [row.reason for row in outcome.rejected] == ["truncated_reply"]


def test_max_seeds_and_disabled_decoupling(pool):
    generator = scripted({text: [reply_text] for text, _, reply_text, _ in CASES.values()})
    seeds = [seed("good"), seed("good_decimal_money")]
    one = decouple(
        seeds,
        generator,
        config=TemplateSynthesisConfig(decouple=DecoupleConfig(max_seeds=1)),
        pool=pool,
        verify_config=VerifyConfig(),
    )
    assert [t.seed_problem_id for t in one.templates] == ["good"]
    off = decouple(
        seeds,
        generator,
        config=TemplateSynthesisConfig(decouple=DecoupleConfig(enabled=False)),
        pool=pool,
        verify_config=VerifyConfig(),
    )
    assert off.templates == [] and off.rejected == []


def test_validate_template_alone(result, pool):
    outcome, _ = result
    good = next(t for t in outcome.templates if t.seed_problem_id == "good")
    assert validate_template(good, seed("good"), pool=pool, verify_config=VerifyConfig()) == (True, "valid")
    wrong_seed = seed("good").model_copy(update={"answer": "20"})
    assert validate_template(good, wrong_seed, pool=pool, verify_config=VerifyConfig()) == (False, "answer_mismatch")

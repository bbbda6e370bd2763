"""paraphrase (TeLL): a rewording is kept only with the same numbers and an answer that re-verifies by execution."""

import pytest

from mathforge.generation.scripted import ScriptedGenerator
from mathforge.records import Problem
from mathforge.sandbox import SandboxConfig, SandboxPool
from mathforge.synthesis.templates import CallConfig, ParaphraseConfig, TemplateSynthesisConfig, paraphrase
from mathforge.verify import VerifyConfig

ON = TemplateSynthesisConfig(paraphrase=ParaphraseConfig(enabled=True))


def instance(problem_id: str, text: str, answer: str) -> Problem:
    return Problem(
        problem_id=problem_id,
        problem=text,
        answer=answer,
        source="template:t",
        solution="A worked solution for the original wording.",
        program="def solve(a, b):\n    return a + b\n",
        template_id="t",
        variables_json='{"a": 12, "b": 7}',
        seed_problem_id="seed",
    )


def answer_with(text: str, program_body: str) -> str:
    return f"Problem: {text}\n\n```python\ndef solve():\n    {program_body}\n```\n"


# problem id -> (instance text, answer, scripted reply, expected outcome)
CASES = {
    "kept": (
        "Tom has 12 apples and buys 7 more. How many apples does he have now?",
        "19",
        answer_with(
            "Mia collects 12 shells on Monday and finds 7 more on Tuesday. How many shells does she have?",
            "return 12 + 7",
        ),
        "accepted",
    ),
    "number_changed": (
        "Ana has 15 pencils and buys 4 more. How many pencils does she have now?",
        "19",
        answer_with("Ana owns 15 crayons and gets 5 more. How many crayons does she own?", "return 15 + 5"),
        "paraphrase_number_changed",
    ),
    "number_dropped": (
        "Ben runs 3 km a day for 6 days. How many km does he run?",
        "18",
        answer_with("Ben runs 3 km every day of the week. How far does he run?", "return 3 * 6"),
        "paraphrase_number_changed",
    ),
    "number_added": (
        "A tin has 20 biscuits and 5 are eaten. How many biscuits are left?",
        "15",
        answer_with("A jar has 20 sweets and 5 are eaten by 2 kids. How many sweets are left?", "return 20 - 5"),
        "paraphrase_number_changed",
    ),
    "meaning_changed": (
        "Lia has 30 stamps and gives away 8. How many stamps does she have left?",
        "22",
        answer_with("Lia has 30 coins and receives 8 more. How many coins does she have now?", "return 30 + 8"),
        "paraphrase_answer_changed",
    ),
    "unchanged": (
        "Sam has 9 marbles and wins 6 more. How many marbles does he have?",
        "15",
        answer_with("Sam has 9 marbles and wins 6 more. How many  marbles does he have?", "return 9 + 6"),
        "paraphrase_unchanged",
    ),
    "no_program": (
        "A bus carries 40 people and 13 get off. How many people are on the bus?",
        "27",
        "Problem: A train carries 40 people and 13 get off. How many people remain on the train?",
        "missing_program",
    ),
    "crashing_program": (
        "Kim bakes 4 trays of 12 muffins. How many muffins does she bake?",
        "48",
        answer_with("Joe fills 4 boxes with 12 oranges each. How many oranges are there?", "return 4 * twelve"),
        "program_error",
    ),
}


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(SandboxConfig(n_workers=2)) as pool:
        yield pool


def generator_for(replies: dict[str, list[str]]) -> ScriptedGenerator:
    def script(prompt: str, index: int, params):
        for text, options in replies.items():
            if prompt.endswith(f"Problem to rewrite: {text}"):
                return options[index]
        raise AssertionError(f"unexpected prompt {prompt[-120:]}")

    return ScriptedGenerator(script=script)


@pytest.fixture(scope="module")
def result(pool):
    problems = [instance(name, text, answer) for name, (text, answer, _, _) in CASES.items()]
    generator = generator_for({text: [reply] for text, _, reply, _ in CASES.values()})
    return paraphrase(problems, generator, pool=pool, config=ON, verify_config=VerifyConfig())


def test_each_reply_gets_the_expected_outcome(result):
    accepted = {
        name: "accepted" for name, (_, _, reply, _) in CASES.items() if any(p.problem in reply for p in result.problems)
    }
    rejected = {row.problem_id: row.reason for row in result.rejected}
    assert len(accepted) == len(result.problems) and not set(accepted) & set(rejected)
    assert {**accepted, **rejected} == {name: expected for name, (_, _, _, expected) in CASES.items()}
    assert sum(result.counts.values()) == len(result.rejected) == len(CASES) - 1


def test_a_changed_number_is_named_in_the_detail(result):
    detail = next(row.detail for row in result.rejected if row.problem_id == "number_changed")
    assert detail == "missing ['4'], added ['5']"


def test_accepted_paraphrase_is_a_new_row_with_the_same_answer_and_lineage(result):
    (kept,) = result.problems
    original = instance("kept", *CASES["kept"][:2])
    assert kept.problem.startswith("Mia collects 12 shells")
    assert kept.problem_id != original.problem_id
    assert (kept.answer, kept.template_id, kept.variables_json, kept.seed_problem_id, kept.program) == (
        original.answer,
        original.template_id,
        original.variables_json,
        original.seed_problem_id,
        original.program,
    )
    assert kept.source == "template:t+paraphrase" and kept.solution is None


def test_a_later_reply_can_rescue_a_bad_first_one(pool):
    text, answer, good, _ = CASES["kept"]
    bad = answer_with("Mia collects 13 shells and finds 7 more. How many shells does she have?", "return 13 + 7")
    config = TemplateSynthesisConfig(paraphrase=ParaphraseConfig(enabled=True, params=CallConfig(n=3)))
    outcome = paraphrase(
        [instance("kept", text, answer)],
        generator_for({text: [bad, good, good]}),
        pool=pool,
        config=config,
        verify_config=VerifyConfig(),
    )
    assert len(outcome.problems) == 1
    assert [(row.row_id, row.reason) for row in outcome.rejected] == [
        ("kept#0", "paraphrase_number_changed"),
        ("kept#2", "surplus_paraphrase"),
    ]


def test_disabled_or_capped(pool):
    problems = [instance(name, text, answer) for name, (text, answer, _, _) in CASES.items()]
    generator = generator_for({text: [reply] for text, _, reply, _ in CASES.values()})
    off = paraphrase(problems, generator, pool=pool, config=TemplateSynthesisConfig(), verify_config=VerifyConfig())
    assert off.problems == [] and off.rejected == []
    capped = paraphrase(
        problems,
        generator,
        pool=pool,
        config=TemplateSynthesisConfig(paraphrase=ParaphraseConfig(enabled=True, max_problems=1)),
        verify_config=VerifyConfig(),
    )
    assert len(capped.problems) == 1 and capped.rejected == []

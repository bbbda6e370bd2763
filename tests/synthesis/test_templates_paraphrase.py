"""paraphrase (TeLL) with a paraphraser that is not trusted: numbers as values, then an independent solve.

The scripted backend plays two roles. As the paraphraser it returns the
table's rewording (sometimes with a program that follows the *original*, which
must never be run). As the independent solver it sees only the reworded text
and writes the program an honest solver would write for that text.
"""

import pytest

from mathforge.generation.scripted import ScriptedGenerator
from mathforge.records import Problem
from mathforge.sandbox import SandboxConfig, SandboxPool
from mathforge.synthesis.templates import CallConfig, ParaphraseConfig, TemplateSynthesisConfig, paraphrase, parse_paraphrase
from mathforge.verify import VerifyConfig

ONE_SOLVER = ParaphraseConfig(enabled=True, solve=CallConfig(n=1), min_reproducing=1)
ON = TemplateSynthesisConfig(paraphrase=ONE_SOLVER)
SOLVE_HEADER = "Write a Python function solve() with no arguments"


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


def program(body: str) -> str:
    return f"```python\ndef solve():\n    {body}\n```\n"


# name -> (instance text, answer, rewording, the honest solver's program body for the rewording, expected outcome)
CASES = {
    "kept": (
        "Tom has 12 apples and buys 7 more. How many apples does he have now?",
        "19",
        "Mia collects 12 shells on Monday and finds 7 more on Tuesday. How many shells does she have?",
        "return 12 + 7",
        "accepted",
    ),
    "digits_to_words": (
        "Ben runs 3 km a day for 6 days. How many km does he run in total?",
        "18",
        "Ana cycles three km every day for six days. How many km does she cycle altogether?",
        "return 3 * 6",
        "accepted",
    ),
    "half_to_fraction": (
        "A cake has 8 slices and Zoe eats half of them. How many slices are left?",
        "4",
        "A pizza is cut into eight pieces and Leo eats 1/2 of them. How many pieces remain?",
        "return 8 - 8 // 2",
        "accepted",
    ),
    "percent_to_quarter": (
        "25% of the 40 students in a class walk to school. How many students walk?",
        "10",
        "A quarter of the 40 members of a choir sing alto. How many members sing alto?",
        "return 40 // 4",
        "accepted",
    ),
    "role_swap": (
        "Ann has 3 times as many stickers as Bo. Bo has 6 stickers. How many stickers does Ann have?",
        "18",
        "Bo has 3 times as many marbles as Ann. Bo has 6 marbles. How many marbles does Ann have?",
        "return 6 // 3",
        "paraphrase_answer_changed",
    ),
    "sign_flip_in_words": (
        "Lia has 30 stamps and gives away 8. How many stamps does she have left?",
        "22",
        # The paraphraser's own program follows the original: the old check ran it and kept this.
        "Lia has 30 coins and receives 8 more. How many coins does she have now?\n\n" + program("return 30 - 8"),
        "return 30 + 8",
        "paraphrase_answer_changed",
    ),
    "sign_flip_in_digits": (
        "The temperature is -5 degrees and rises by 12 degrees. What is the temperature now?",
        "7",
        "At dawn it is 5 degrees and it warms by 12 degrees. What is the temperature at noon?",
        "return 5 + 12",
        "paraphrase_number_changed",
    ),
    "fraction_inversion": (
        "A jug holds 6 liters and is 1/2 full. How many liters of water are in it?",
        "3",
        "A tank holds 6 liters and is 2/1 full. How many liters of water are in it?",
        "return 6 * 2",
        "paraphrase_number_changed",
    ),
    "unit_change": (
        "A car travels at 60 km per hour for 2 hours. How many km does it travel?",
        "120",
        "A bus moves at 60 km per hour for 2 minutes. How many km does it move?",
        "return 60 * 2 // 60",
        "paraphrase_answer_changed",
    ),
    "half_to_a_third": (
        "Zoe has 12 cookies and eats half of them. How many cookies are left?",
        "6",
        "Max has 12 crackers and eats a third of them. How many crackers are left?",
        "return 12 - 12 // 3",
        "paraphrase_number_changed",
    ),
    "number_word_changed": (
        "Sam buys 3 packs of 4 pens. How many pens does he buy?",
        "12",
        "Eve buys four boxes of four pencils. How many pencils does she buy?",
        "return 4 * 4",
        "paraphrase_number_changed",
    ),
    "number_added": (
        "A tin has 20 biscuits and 5 are eaten. How many biscuits are left?",
        "15",
        "A jar has 20 sweets and 5 are eaten by 2 kids. How many sweets are left?",
        "return 20 - 5",
        "paraphrase_number_changed",
    ),
    "unchanged": (
        "Sam has 9 marbles and wins 6 more. How many marbles does he have?",
        "15",
        "Sam has 9 marbles and wins 6 more. How many  marbles does he have?",
        "return 9 + 6",
        "paraphrase_unchanged",
    ),
    "solver_writes_no_program": (
        "A bus carries 40 people and 13 get off. How many people are on the bus?",
        "27",
        "A train carries 40 people and 13 leave it. How many people remain on the train?",
        None,
        "solve_failed",
    ),
    "solver_program_crashes": (
        "Kim bakes 4 trays of 12 muffins. How many muffins does she bake?",
        "48",
        "Joe fills 4 boxes with 12 oranges each. How many oranges are there?",
        "return 4 * twelve",
        "solve_failed",
    ),
}


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(SandboxConfig(n_workers=2)) as pool:
        yield pool


class Backend:
    """The scripted paraphraser and solver; records the solver's prompts."""

    def __init__(self, rewordings: dict[str, list[str]], solutions: dict[str, list[str | None]]) -> None:
        self.rewordings = rewordings
        self.solutions = solutions
        self.solver_prompts: list[str] = []

    def script(self, prompt: str, index: int, params) -> str:
        for text, options in self.rewordings.items():
            if prompt.endswith(f"Problem to rewrite: {text}"):
                return options[index]
        if prompt.startswith(SOLVE_HEADER):
            self.solver_prompts.append(prompt)
            for text, bodies in self.solutions.items():
                if prompt.endswith(f"Problem: {text}"):
                    body = bodies[index]
                    return "I will count carefully." if body is None else program(body)
        raise AssertionError(f"unexpected prompt {prompt[-120:]}")

    def generator(self) -> ScriptedGenerator:
        return ScriptedGenerator(script=self.script)


def backend_for(cases: dict) -> Backend:
    return Backend(
        {text: [reply] for text, _, reply, _, _ in cases.values()},
        {parse_paraphrase(reply): [body] for _, _, reply, body, _ in cases.values()},
    )


@pytest.fixture(scope="module")
def run(pool):
    problems = [instance(name, text, answer) for name, (text, answer, *_) in CASES.items()]
    backend = backend_for(CASES)
    return backend, paraphrase(problems, backend.generator(), pool=pool, config=ON, verify_config=VerifyConfig())


def test_each_rewording_gets_the_expected_outcome(run):
    _, result = run
    kept = {p.problem: p for p in result.problems}
    accepted = {name: "accepted" for name, (_, _, reply, _, _) in CASES.items() if parse_paraphrase(reply) in kept}
    rejected = {row.problem_id: row.reason for row in result.rejected}
    assert not set(accepted) & set(rejected)
    assert {**accepted, **rejected} == {name: case[-1] for name, case in CASES.items()}
    assert result.counts == {
        "paraphrase_answer_changed": 3,
        "paraphrase_number_changed": 5,
        "paraphrase_unchanged": 1,
        "solve_failed": 2,
    }


def test_the_solver_sees_the_rewording_alone(run):
    backend, result = run
    assert backend.solver_prompts, "no independent solve ran"
    originals = [text for text, *_ in CASES.values()]
    for prompt in backend.solver_prompts:
        assert not any(original in prompt for original in originals)
        assert "def solve():\n    return" not in prompt  # no earlier program in context
    # Only rewordings that passed the number check are solved, one program each.
    assert result.n_solutions == len(backend.solver_prompts) == 9
    assert result.n_reproducing == 4


def test_rejections_name_what_changed(run):
    _, result = run
    details = {row.problem_id: row.detail for row in result.rejected}
    assert details["half_to_a_third"] == "missing ['1/2'], added ['1/3']"
    assert details["fraction_inversion"] == "missing ['1/2'], added ['2']"
    assert details["sign_flip_in_digits"] == "missing ['-5'], added ['5']"
    assert details["number_word_changed"] == "missing ['3'], added ['4']"
    assert "others gave [38]" in details["sign_flip_in_words"]


def test_accepted_paraphrase_is_a_new_row_with_the_same_answer_and_lineage(run):
    _, result = run
    kept = next(p for p in result.problems if p.problem.startswith("Mia collects 12 shells"))
    original = instance("kept", *CASES["kept"][:2])
    assert kept.problem_id != original.problem_id
    assert (kept.answer, kept.template_id, kept.variables_json, kept.seed_problem_id, kept.program) == (
        original.answer,
        original.template_id,
        original.variables_json,
        original.seed_problem_id,
        original.program,
    )
    assert kept.source == "template:t+paraphrase" and kept.solution is None


@pytest.mark.parametrize(
    ("bodies", "expected"),
    [
        (["return 12 + 7", "return 12 + 7", "return 12 - 7"], None),
        (["return 12 + 7", "return 12 - 7", "return 12 * 7"], "paraphrase_answer_changed"),
        (["return 12 + 7", None, "return twelve"], "solve_failed"),
    ],
    ids=["two_of_three_reproduce", "one_of_three_is_not_enough", "one_reproduces_the_others_fail"],
)
def test_k_independent_solutions_need_min_reproducing(pool, bodies, expected):
    text, answer, reply, _, _ = CASES["kept"]
    backend = Backend({text: [reply]}, {parse_paraphrase(reply): bodies})
    config = TemplateSynthesisConfig(
        paraphrase=ParaphraseConfig(enabled=True, solve=CallConfig(n=3), min_reproducing=2)
    )
    result = paraphrase([instance("kept", text, answer)], backend.generator(), pool=pool, config=config, verify_config=VerifyConfig())
    assert [row.reason for row in result.rejected] == ([] if expected is None else [expected])
    assert len(result.problems) == (1 if expected is None else 0)
    assert (result.n_solutions, result.n_reproducing) == (3, bodies.count("return 12 + 7"))


def test_a_later_reply_can_rescue_a_bad_first_one(pool):
    text, answer, good, body, _ = CASES["kept"]
    bad = "Mia collects 13 shells and finds 7 more. How many shells does she have?"
    config = TemplateSynthesisConfig(
        paraphrase=ParaphraseConfig(enabled=True, params=CallConfig(n=3), solve=CallConfig(n=1), min_reproducing=1)
    )
    backend = Backend({text: [bad, good, good]}, {good: [body]})
    outcome = paraphrase([instance("kept", text, answer)], backend.generator(), pool=pool, config=config, verify_config=VerifyConfig())
    assert len(outcome.problems) == 1
    assert [(row.row_id, row.reason) for row in outcome.rejected] == [
        ("kept#0", "paraphrase_number_changed"),
        ("kept#2", "surplus_paraphrase"),
    ]


def test_min_reproducing_cannot_exceed_the_solutions():
    with pytest.raises(ValueError, match="exceeds solve.n"):
        ParaphraseConfig(solve=CallConfig(n=1), min_reproducing=2)


def test_disabled_or_capped(pool):
    problems = [instance(name, text, answer) for name, (text, answer, *_) in CASES.items()]
    off = paraphrase(problems, backend_for(CASES).generator(), pool=pool, config=TemplateSynthesisConfig(), verify_config=VerifyConfig())
    assert off.problems == [] and off.rejected == []
    capped = paraphrase(
        problems,
        backend_for(CASES).generator(),
        pool=pool,
        config=TemplateSynthesisConfig(paraphrase=ONE_SOLVER.model_copy(update={"max_problems": 1})),
        verify_config=VerifyConfig(),
    )
    assert len(capped.problems) == 1 and capped.rejected == []

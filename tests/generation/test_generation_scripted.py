"""The scripted generator: deterministic, and its empirical pass rate matches the configured one."""

import re

import pytest

from mathforge.generation import GenerationParams
from mathforge.generation.cache import CachedGenerator
from mathforge.generation.scripted import ScriptedGenerator, ScriptedProblem

PROBLEMS = [ScriptedProblem(f"p{i}", f"Problem {i}: how many marbles are left?", str(10 + i)) for i in range(20)]


def _correct(text: str, answer: str) -> bool:
    boxed = re.findall(r"\\boxed\{([^}]*)\}", text)
    return bool(boxed) and boxed[-1] == answer


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_empirical_pass_rate_matches_configured(rate):
    generator = ScriptedGenerator(PROBLEMS, pass_rate=rate, seed=3)
    outputs = generator.generate([p.problem for p in PROBLEMS], GenerationParams(n=500))
    hits = sum(_correct(c.text, p.answer) for p, row in zip(PROBLEMS, outputs) for c in row)
    # 10,000 draws: the standard error is at most 0.005; 4 sigma is 0.02.
    assert abs(hits / 10_000 - rate) < 0.02


def test_per_problem_rates_and_determinism():
    rates = {"p0": 0.0, "p1": 1.0}
    generator = ScriptedGenerator(PROBLEMS[:2], pass_rate=rates)
    params = GenerationParams(n=50, seed=7)
    first = generator.generate([PROBLEMS[0].problem, PROBLEMS[1].problem], params)
    again = ScriptedGenerator(PROBLEMS[:2], pass_rate=rates).generate([PROBLEMS[1].problem, PROBLEMS[0].problem], params)
    assert not any(_correct(c.text, "10") for c in first[0])
    assert all(_correct(c.text, "11") for c in first[1])
    assert again[0] == first[1] and again[1] == first[0]  # order-independent


def test_wrong_responses_include_malformed_and_truncated():
    generator = ScriptedGenerator(PROBLEMS[:1], pass_rate=0.0, malformed_rate=0.3, truncated_rate=0.3)
    completions = generator.generate([PROBLEMS[0].problem], GenerationParams(n=200))[0]
    assert any("\\boxed" not in c.text for c in completions)
    assert any(c.finish_reason == "length" for c in completions)


def test_stop_strings_and_max_tokens_apply():
    generator = ScriptedGenerator(script=lambda text, i, p: "a b c STOP d e")
    stopped = generator.generate(["x"], GenerationParams(stop=("STOP",)))[0][0]
    assert stopped.text.strip() == "a b c" and stopped.stop_reason == "STOP"
    cut = generator.generate(["x"], GenerationParams(max_tokens=2))[0][0]
    assert cut.finish_reason == "length" and cut.n_tokens == 2


def test_loglikelihood_is_deterministic_and_counts_continuation_tokens():
    generator = ScriptedGenerator()
    first = generator.loglikelihood([("prompt", "one two three")])[0]
    assert first == generator.loglikelihood([("prompt", "one two three")])[0]
    assert first.n_tokens == 3 and first.sum_logprob < 0


class CountingGenerator(ScriptedGenerator):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.asked = 0

    def generate(self, prompts, params):
        self.asked += len(prompts) * params.n
        return super().generate(prompts, params)


def test_cache_serves_what_it_has_and_generates_only_the_rest(tmp_path):
    inner = CountingGenerator(PROBLEMS, pass_rate=0.5)
    cached = CachedGenerator(inner, tmp_path / "cache.sqlite")
    prompts = [p.problem for p in PROBLEMS[:3]]
    first = cached.generate(prompts, GenerationParams(n=2, seed=1))
    assert inner.asked == 6
    again = CachedGenerator(CountingGenerator(PROBLEMS, pass_rate=0.5), tmp_path / "cache.sqlite")
    more = again.generate(prompts, GenerationParams(n=3, seed=1))
    assert again.inner.asked == 3  # one new completion per prompt
    assert [row[:2] for row in more] == first


def test_score_tokens_is_deterministic_context_dependent_and_masked():
    from mathforge.generation.scripted import ScriptedGenerator

    generator = ScriptedGenerator(seed=3)
    ids = [5, 6, 7, 8, 9]
    first = generator.score_tokens([(ids, [0, 0, 1, 1, 0])])[0]
    assert first == generator.score_tokens([(ids, [0, 0, 1, 1, 0])])[0]
    assert first.n_tokens == 2 and -3.0 * 2 <= first.sum_logprob <= -0.1 * 2
    # The same scored tokens after another context score differently.
    assert generator.score_tokens([([4, 6, 7, 8, 9], [0, 0, 1, 1, 0])])[0] != first
    # Another model scores differently.
    assert ScriptedGenerator(seed=3, model_id="other").score_tokens([(ids, [0, 0, 1, 1, 0])])[0] != first
    for mask, message in [([0, 1], "mask of 2"), ([0, 0, 0, 0, 0], "no token"), ([1, 0, 0, 0, 0], "first token"), ([0, 2, 0, 0, 0], "0 and 1")]:
        with pytest.raises(ValueError, match=message):
            generator.score_tokens([(ids, mask)])

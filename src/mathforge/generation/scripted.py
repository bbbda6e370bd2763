"""A deterministic generator with no model: the workhorse of logic tests and benchmarks.

It knows the problems it may be asked about (text and reference answer) and
finds the one a prompt mentions. For each (prompt, call seed, completion index)
it draws from a hash-seeded RNG whether the response is correct, with the
problem's configured pass rate; a wrong response is sometimes malformed (no
`\\boxed{}`) or truncated (`finish_reason="length"`). The same inputs always
give the same outputs, independent of call order, so a resumed run sees exactly
what an uninterrupted one saw.

A `script` callable overrides all of that for prompts it answers (it returns
None to decline): tests use it to script replies (templates, corrections).

As a `TokenScorer` it exposes a real tokenizer (the embedded model's unless
told otherwise, so chat templates render as in production) and gives every
scored token a pseudo log-probability drawn from a hash of the model id, the
seed and the whole sequence up to that token: scores depend on context, as a
model's do.
"""

from __future__ import annotations

import hashlib
import random
import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

from mathforge.generation.base import (
    Completion,
    GenerationParams,
    LogLikelihood,
    MaskedTokens,
    Prompt,
    TokenUsage,
    check_masked_tokens,
)
from mathforge.generation.embedded import DEFAULT_MODEL, load_tokenizer

#: (prompt text, completion index, params) -> reply text, or None to decline.
Script = Callable[[str, int, GenerationParams], "str | None"]
PassRate = float | Mapping[str, float] | Callable[[str], float]


@dataclass(frozen=True)
class ScriptedProblem:
    """A problem the scripted generator can answer: id, text, reference answer."""

    problem_id: str
    problem: str
    answer: str


def prompt_text(prompt: Prompt) -> str:
    """Flatten a prompt to text: a string as is, chat messages joined by newlines."""
    if isinstance(prompt, str):
        return prompt
    return "\n".join(message["content"] for message in prompt)


def _rng(*parts: object) -> random.Random:
    digest = hashlib.sha256(repr(parts).encode("utf-8")).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _wrong_answer(answer: str, rng: random.Random) -> str:
    """A plausible wrong answer: a nearby integer, or the reference with something appended."""
    try:
        value = int(answer.replace(",", ""))
    except ValueError:
        return f"{answer}+{rng.randint(1, 9)}"
    offset = rng.choice([-3, -2, -1, 1, 2, 3, 10])
    return str(value + offset)


def _count_tokens(text: str) -> int:
    """Whitespace token count: the scripted stand-in for a tokenizer."""
    return max(1, len(text.split()))


class ScriptedGenerator:
    """Deterministic `Generator` with configurable per-problem pass rates.

    Args:
        problems: problems it can recognize in prompts (matched by their text).
        pass_rate: one rate for all, a mapping problem_id -> rate, or a function of problem_id.
        script: optional reply override, see the module docstring.
        seed: base seed; together with `GenerationParams.seed` it fixes every draw.
        malformed_rate: share of wrong responses that carry no boxed answer.
        truncated_rate: share of wrong responses cut off (finish_reason 'length').
        model_id: value reported as the model.
        latency_s: seconds each `generate` call sleeps (stands in for a model's latency).
        tokenizer_model: model whose tokenizer `tokenizer` loads (embedded name or directory).
    """

    def __init__(
        self,
        problems: Iterable[ScriptedProblem] = (),
        *,
        pass_rate: PassRate = 0.5,
        script: Script | None = None,
        seed: int = 0,
        malformed_rate: float = 0.1,
        truncated_rate: float = 0.05,
        model_id: str = "scripted",
        latency_s: float = 0.0,
        tokenizer_model: str = DEFAULT_MODEL,
    ) -> None:
        self.problems = list(problems)
        self._by_text = sorted(self.problems, key=lambda p: len(p.problem), reverse=True)
        self.pass_rate = pass_rate
        self.script = script
        self.seed = seed
        self.malformed_rate = malformed_rate
        self.truncated_rate = truncated_rate
        self.model_id = model_id
        self.latency_s = latency_s
        self.tokenizer_model = tokenizer_model
        self.usage = TokenUsage()

    def rate_for(self, problem_id: str) -> float:
        """The configured pass rate of a problem, in [0, 1]."""
        if callable(self.pass_rate):
            rate = self.pass_rate(problem_id)
        elif isinstance(self.pass_rate, Mapping):
            rate = self.pass_rate.get(problem_id, 0.0)
        else:
            rate = self.pass_rate
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"pass rate for {problem_id!r} must be in [0, 1], got {rate}")
        return rate

    def find_problem(self, text: str) -> ScriptedProblem | None:
        """Return the (longest) known problem whose text occurs in `text`."""
        for problem in self._by_text:
            if problem.problem in text:
                return problem
        return None

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams) -> list[list[Completion]]:
        """Return `params.n` deterministic completions per prompt, in input order."""
        if self.latency_s:
            time.sleep(self.latency_s)
        results = []
        for prompt in prompts:
            text = prompt_text(prompt)
            key = hashlib.sha256(text.encode("utf-8")).hexdigest()
            results.append([self._complete(text, key, index, params) for index in range(params.n)])
        self.usage.n_requests += len(prompts)
        self.usage.n_samples += len(prompts) * params.n
        self.usage.prompt_tokens += sum(_count_tokens(prompt_text(p)) for p in prompts) * params.n
        self.usage.completion_tokens += sum(c.n_tokens for row in results for c in row)
        return results

    def _complete(self, text: str, key: str, index: int, params: GenerationParams) -> Completion:
        if self.script is not None:
            reply = self.script(text, index, params)
            if reply is not None:
                return self._finish(reply, params)
        problem = self.find_problem(text)
        rng = _rng(self.seed, params.seed, key, index)
        if problem is None:
            return self._finish(f"I am not sure how to solve this. The answer is \\boxed{{{rng.randint(0, 99)}}}.", params)
        if rng.random() < self.rate_for(problem.problem_id):
            return self._finish(self._solution(problem.answer, rng), params)
        roll = rng.random()
        if roll < self.malformed_rate:
            return self._finish("Let me think step by step.\nThe numbers are hard to combine, so I will stop here.", params)
        if roll < self.malformed_rate + self.truncated_rate:
            body = self._solution(_wrong_answer(problem.answer, rng), rng)
            words = body.split()
            return Completion(text=" ".join(words[: max(1, len(words) // 2)]), n_tokens=len(words) // 2 or 1, finish_reason="length")
        return self._finish(self._solution(_wrong_answer(problem.answer, rng), rng), params)

    @staticmethod
    def _solution(answer: str, rng: random.Random) -> str:
        steps = rng.randint(2, 4)
        lines = ["Let's solve this step by step."]
        lines += [f"Step {i + 1}: we work out the next quantity from the given numbers." for i in range(steps)]
        lines.append(f"Therefore, the final answer is \\boxed{{{answer}}}.")
        return "\n".join(lines)

    @staticmethod
    def _finish(text: str, params: GenerationParams) -> Completion:
        """Apply stop strings and max_tokens the way a real backend would."""
        stop_reason = None
        for stop in params.stop:
            position = text.find(stop)
            if position >= 0:
                text = text[: position + len(stop)] if params.include_stop_str_in_output else text[:position]
                stop_reason = stop
                break
        words = re.findall(r"\S+\s*", text)
        if len(words) > params.max_tokens:
            return Completion(text="".join(words[: params.max_tokens]).rstrip(), n_tokens=params.max_tokens, finish_reason="length")
        return Completion(text=text, n_tokens=max(1, len(words)), finish_reason="stop", stop_reason=stop_reason)

    def loglikelihood(self, pairs: Sequence[tuple[Prompt, str]]) -> list[LogLikelihood]:
        """Deterministic pseudo log-likelihoods: a hash-seeded per-token value in [-3, -0.1] nats."""
        results = []
        for prompt, continuation in pairs:
            n_tokens = _count_tokens(continuation)
            rng = _rng("loglik", self.seed, prompt_text(prompt), continuation)
            per_token = -0.1 - 2.9 * rng.random()
            results.append(LogLikelihood(sum_logprob=per_token * n_tokens, n_tokens=n_tokens))
        return results

    @property
    def tokenizer(self) -> Any:
        """The tokenizer of `tokenizer_model`, loaded on first use."""
        return load_tokenizer(self.tokenizer_model)

    def score_tokens(self, sequences: Sequence[MaskedTokens]) -> list[LogLikelihood]:
        """Deterministic pseudo log-probabilities in [-3, -0.1] nats per masked token, each a hash of its prefix."""
        check_masked_tokens(sequences)
        results = []
        for ids, mask in sequences:
            state = hashlib.sha256(repr(("score", self.model_id, self.seed)).encode("utf-8"))
            total = 0.0
            for token, is_scored in zip(ids, mask):
                state.update(int(token).to_bytes(8, "big", signed=True))
                if is_scored:
                    draw = int.from_bytes(state.copy().digest()[:8], "big") / 2**64
                    total += -0.1 - 2.9 * draw
            results.append(LogLikelihood(sum_logprob=total, n_tokens=int(sum(mask))))
        return results

def planted_references(
    n_problems: int, *, every: int = 10, seed: int = 0
) -> tuple[list[tuple[str, str, str]], ScriptedGenerator, set[str]]:
    """A reference-audit scenario: every `every`-th problem carries a wrong reference the model does not share.

    Returns (problem_id, text, reference) triples, a generator that knows the
    true answers (`generator.problems`), and the planted problem ids. A
    problem's pass rate (the share of the model's responses giving its
    answer) is drawn from [0.55, 0.95] on planted problems, so the model's
    majority answer differs from the reference there, and from [0.2, 0.95]
    elsewhere. Planted offsets include ones the
    model's wrong answers also take (+1), so some responses "verify" against
    the wrong reference.
    """
    rng = random.Random(seed)
    rows, truth, rates, planted = [], [], {}, set()
    for i in range(n_problems):
        problem_id, text, true = f"p{i}", f"Problem {i}: a shop packs {i + 3} boxes. How many?", 100 + 7 * i
        is_planted = i % every == every // 3
        reference = true + rng.choice([5, -4, 1, 12]) if is_planted else true
        rows.append((problem_id, text, str(reference)))
        truth.append(ScriptedProblem(problem_id, text, str(true)))
        rates[problem_id] = rng.uniform(0.55, 0.95) if is_planted else rng.uniform(0.2, 0.95)
        if is_planted:
            planted.add(problem_id)
    return rows, ScriptedGenerator(truth, pass_rate=rates, seed=seed), planted


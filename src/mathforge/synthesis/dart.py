"""Difficulty-aware rejection sampling (DART-Math, Tong et al., 2024).

Sample solutions until each query has enough verified-correct responses, so
hard queries get more trials and the dataset is not biased toward easy ones.

Strategies (as in the paper):
- `uniform`: k_u correct responses per query.
- `prop2diff`: correct responses proportional to difficulty (fail rate), at
  least one for every solved query; difficulty comes from a probe round of
  `n_probe` samples per query and is re-estimated as samples arrive.
- `vanilla`: a fixed number of trials per query (the baseline).
Every query stops at `n_max` trials.

What differs from DART's released code: it cycles through every query one
prompt at a time in fixed large batches and stops a query only after the batch,
overshooting. Here the loop runs in rounds over unsatisfied queries only; each
round asks each query for a low quantile of the trials it still needs under a
Beta posterior of its pass rate (bounded by `max_per_round`), so batches stay
full and little is wasted past the target. Correct responses beyond a query's target are kept
as surplus rows, not dropped. State is the list of committed rounds: replaying
them rebuilds the counts, which is what makes a killed run resumable.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Literal, Sequence

from pydantic import Field
from scipy.stats import nbinom

from mathforge.section import Section
from mathforge.generation.base import GenerationParams, Generator, Prompt, prompt_hash
from mathforge.records import Problem, QueryInfo, Sample, Verdict, judged_sample, stable_id
from mathforge.synthesis.reference_audit import ReferenceAuditConfig

VerifyMany = Callable[[list[tuple[str, str]]], list[Verdict]]
PromptFn = Callable[[Problem], Prompt]
#: Whether a problem asks for a decimal (verify.asks_for_decimal); given, `verify_many` also takes
#: `decimal_requested=[flag per pair]` (VerifierPool.verify_many does), for the approximate_constants policy.
DecimalRequested = Callable[[Problem], bool]


class DartConfig(Section):
    """Difficulty-aware rejection sampling."""

    enabled: bool = Field(default=True, description="Run the stage.")
    strategy: Literal["uniform", "prop2diff", "vanilla"] = Field(default="uniform", description="Sampling strategy.")
    k_uniform: int = Field(default=4, ge=1, description="uniform: correct responses wanted per query (k_u).")
    k_max: int = Field(default=8, ge=1, description="prop2diff: correct responses wanted for a query that always fails.")
    n_vanilla: int = Field(default=4, ge=1, description="vanilla: trials per query.")
    n_probe: int = Field(default=8, ge=1, description="prop2diff: trials per query in the probe round.")
    n_max: int = Field(default=64, ge=1, description="Cap of trials per query.")
    max_per_round: int = Field(default=32, ge=1, description="Most trials one query gets in one round.")
    request_quantile: float = Field(
        default=0.3,
        gt=0.0,
        lt=1.0,
        description="Per round, ask for this quantile of the trials a query still needs under its estimated "
        "pass rate: lower wastes fewer samples past the target, higher needs fewer rounds.",
    )
    max_rounds: int = Field(default=100, ge=1, description="Stop after this many rounds even if queries remain unsatisfied.")
    prompt: str = Field(default="solve_cot", description="Prompt template in prompts/ (variable: problem).")
    temperature: float = Field(default=0.7, ge=0.0, description="Sampling temperature.")
    top_p: float = Field(default=1.0, gt=0.0, le=1.0, description="Nucleus sampling.")
    max_tokens: int = Field(default=512, ge=1, description="Longest response, tokens.")
    keep_negatives: bool = Field(default=True, description="Also output incorrect/unjudgeable samples (for self-correction).")
    seed: int = Field(default=0, description="Base seed; round r uses a seed derived from (seed, r).")
    reference_audit: ReferenceAuditConfig = Field(
        default_factory=ReferenceAuditConfig,
        description="Audit of reference answers against the sampled answers, run after sampling.",
    )

    def params(self, n: int, round_index: int) -> GenerationParams:
        """Sampling parameters of a round, `n` completions per prompt."""
        return GenerationParams(
            n=n,
            temperature=self.temperature,
            top_p=self.top_p,
            max_tokens=self.max_tokens,
            seed=int(stable_id(self.seed, round_index, length=8), 16),
        )


@dataclass
class QueryState:
    """Running counts of one query."""

    n_trials: int = 0
    n_correct: int = 0
    n_rounds: int = 0
    target: int = 0

    @property
    def pass_rate(self) -> float:
        return self.n_correct / self.n_trials if self.n_trials else 0.0


@dataclass
class DartResult:
    """Accepted (one row per kept correct response, surplus flagged), negatives and per-query info."""

    accepted: list[Sample]
    negatives: list[Sample]
    query_info: list[QueryInfo]
    n_rounds: int
    counts: dict[str, int] = field(default_factory=dict)


def wilson_interval(successes: int, trials: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion.

    >>> wilson_interval(0, 0)
    (0.0, 1.0)
    """
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def target_for(state: QueryState, config: DartConfig) -> int:
    """Correct responses wanted for a query given its counts (prop2diff re-estimates each round)."""
    if config.strategy == "uniform":
        return config.k_uniform
    if config.strategy == "vanilla":
        return 0  # vanilla stops on trials, not on correct responses
    if state.n_trials == 0:
        return config.k_max
    fail_rate = 1.0 - state.pass_rate
    return max(1, math.ceil(config.k_max * fail_rate - 1e-9)) if state.n_correct else config.k_max


def is_satisfied(state: QueryState, config: DartConfig) -> bool:
    """Whether a query needs no more trials (target reached, trial cap hit, or vanilla done)."""
    if state.n_trials >= config.n_max:
        return True
    if config.strategy == "vanilla":
        return state.n_trials >= config.n_vanilla
    if config.strategy == "prop2diff" and state.n_trials < config.n_probe:
        return False
    return state.n_correct >= target_for(state, config)


def trials_to_request(state: QueryState, config: DartConfig) -> int:
    """Trials to ask for this round: a low quantile of the trials still needed, bounded.

    With p_hat the posterior-mean pass rate (uniform Beta(1, 1) prior), the
    trials to the remaining `need` successes follow a negative binomial; asking
    for its `request_quantile` quantile rarely overshoots the target (overshoot
    is waste) while finishing most queries in a few rounds. The first round asks
    for exactly the target: an easy query then wastes nothing.
    """
    room = config.n_max - state.n_trials
    if config.strategy == "vanilla":
        return min(config.n_vanilla - state.n_trials, room)
    if config.strategy == "prop2diff" and state.n_trials < config.n_probe:
        return min(config.n_probe - state.n_trials, room)
    need = target_for(state, config) - state.n_correct
    if state.n_trials == 0:
        wanted = need
    else:
        p_hat = (state.n_correct + 1.0) / (state.n_trials + 2.0)
        wanted = need + int(nbinom.ppf(config.request_quantile, need, p_hat))
    return max(1, min(wanted, config.max_per_round, room))


def make_samples(
    problem: Problem,
    completions: Sequence,
    verdicts: Sequence[Verdict],
    *,
    first_index: int,
    round_index: int,
    model: str,
    params: GenerationParams,
    prompt: Prompt,
    strategy: str,
    verifier: str,
) -> list[Sample]:
    """Build Sample rows for one problem's completions of one round (lineage and verdicts filled)."""
    sampling = params.to_json()
    digest = prompt_hash(prompt)
    rows = []
    for offset, (completion, verdict) in enumerate(zip(completions, verdicts)):
        index = first_index + offset
        rows.append(
            judged_sample(
                problem,
                verdict,
                sample_id=stable_id(problem.problem_id, model, digest, strategy, index),
                response=completion.text,
                finish_reason=completion.finish_reason,
                n_completion_tokens=completion.n_tokens,
                verifier=verifier,
                model=model,
                sampling_json=sampling,
                prompt_hash=digest,
                round=round_index,
                sample_index=index,
                strategy=strategy,
            )
        )
    return rows


def update_states(states: dict[str, QueryState], round_samples: Sequence[Sample], config: DartConfig) -> None:
    """Add one round's samples to the per-query counts (in place) and refresh targets."""
    touched = set()
    for sample in round_samples:
        state = states[sample.problem_id]
        state.n_trials += 1
        state.n_correct += sample.verdict == "correct"
        touched.add(sample.problem_id)
    for problem_id in touched:
        states[problem_id].n_rounds += 1
        states[problem_id].target = target_for(states[problem_id], config)


def replay(problems: Sequence[Problem], rounds: Sequence[Sequence[Sample]], config: DartConfig) -> dict[str, QueryState]:
    """Rebuild per-query counts from committed rounds."""
    states = {p.problem_id: QueryState() for p in problems}
    for state in states.values():
        state.target = target_for(state, config)
    for round_samples in rounds:
        update_states(states, round_samples, config)
    return states


def sample_round(
    problems: Sequence[Problem],
    states: dict[str, QueryState],
    generator: Generator,
    verify_many: VerifyMany,
    config: DartConfig,
    *,
    round_index: int,
    prompt_fn: PromptFn,
    verifier: str,
    decimal_requested: DecimalRequested | None = None,
) -> list[Sample]:
    """Generate and verify one round for every unsatisfied query; return the round's samples.

    Queries are grouped by how many trials they get so each group is one
    `generate` call with `n` completions per prompt.
    """
    groups: dict[int, list[Problem]] = defaultdict(list)
    for problem in problems:
        state = states[problem.problem_id]
        if not is_satisfied(state, config):
            groups[trials_to_request(state, config)].append(problem)
    strategy = f"dart-{config.strategy}"
    samples: list[Sample] = []
    for n, members in sorted(groups.items()):
        params = config.params(n, round_index)
        prompts = [prompt_fn(problem) for problem in members]
        outputs = generator.generate(prompts, params)
        pairs = [(problem.answer, c.text) for problem, completions in zip(members, outputs) for c in completions]
        if decimal_requested is None:
            verdicts = iter(verify_many(pairs))
        else:
            flags = [decimal_requested(problem) for problem, completions in zip(members, outputs) for _ in completions]
            verdicts = iter(verify_many(pairs, decimal_requested=flags))
        for problem, prompt, completions in zip(members, prompts, outputs):
            judged = []
            for completion in completions:
                verdict = next(verdicts)
                if completion.finish_reason == "length":
                    # A cut-off response is not a solution, whatever its last number says.
                    verdict = Verdict(is_correct=None, reason="truncated", extracted=verdict.extracted, method="")
                judged.append(verdict)
            samples.extend(
                make_samples(
                    problem,
                    completions,
                    judged,
                    first_index=states[problem.problem_id].n_trials,
                    round_index=round_index,
                    model=generator.model_id,
                    params=params,
                    prompt=prompt,
                    strategy=strategy,
                    verifier=verifier,
                )
            )
    return samples


def finalize(problems: Sequence[Problem], rounds: Sequence[Sequence[Sample]], config: DartConfig) -> DartResult:
    """Turn all rounds' samples into accepted rows, negatives and the query-info table.

    Accepted: every correct response, the first `target` per query (in round,
    index order) as regular rows and the rest with `is_surplus=True`; each row
    carries its query's n_trials, n_correct, pass_rate and 95% interval.
    """
    states = replay(problems, rounds, config)
    by_problem: dict[str, list[Sample]] = defaultdict(list)
    for round_samples in rounds:
        for sample in round_samples:
            by_problem[sample.problem_id].append(sample)
    accepted: list[Sample] = []
    negatives: list[Sample] = []
    info: list[QueryInfo] = []
    counts: dict[str, int] = defaultdict(int)
    for problem in problems:
        state = states[problem.problem_id]
        low, high = wilson_interval(state.n_correct, state.n_trials)
        stats = {
            "n_trials": state.n_trials,
            "n_correct": state.n_correct,
            "pass_rate": state.pass_rate,
            "pass_rate_low": low,
            "pass_rate_high": high,
        }
        target = state.n_correct if config.strategy == "vanilla" else state.target
        kept = 0
        for sample in sorted(by_problem[problem.problem_id], key=lambda s: (s.round, s.sample_index)):
            if sample.verdict == "correct":
                accepted.append(sample.model_copy(update={**stats, "is_surplus": kept >= target}))
                counts["surplus" if kept >= target else "accepted"] += 1
                kept += 1
            else:
                counts[f"rejected_{sample.verdict_reason or sample.verdict}"] += 1
                if config.keep_negatives:
                    negatives.append(sample.model_copy(update=stats))
        if state.n_correct == 0:
            status = "unsolved"
        elif config.strategy == "vanilla" or state.n_correct >= state.target:
            status = "solved"
        else:
            status = "capped"
        counts[f"queries_{status}"] += 1
        info.append(
            QueryInfo(
                problem_id=problem.problem_id,
                target=target,
                n_rounds=state.n_rounds,
                status=status,
                **stats,
            )
        )
    return DartResult(accepted, negatives, info, len(rounds), dict(counts))


def run_dart(
    problems: Sequence[Problem],
    generator: Generator,
    verify_many: VerifyMany,
    config: DartConfig,
    *,
    prompt_fn: PromptFn,
    verifier: str = "",
    rounds_done: Sequence[Sequence[Sample]] = (),
    on_round: Callable[[int, list[Sample]], None] | None = None,
    decimal_requested: DecimalRequested | None = None,
) -> DartResult:
    """Run DART rounds until every query is satisfied or `max_rounds`; resume after `rounds_done`.

    `decimal_requested(problem)`, when given, is passed per pair to
    `verify_many` (see DecimalRequested).

    `on_round(index, samples)` is called after each round is verified, before
    the next starts: the caller commits it (the run store), so a killed run
    resumes from its last complete round with `rounds_done`.
    """
    if len({p.problem_id for p in problems}) != len(problems):
        raise ValueError("problem_id values must be unique")
    rounds = [list(r) for r in rounds_done]
    states = replay(problems, rounds, config)
    while len(rounds) < config.max_rounds:
        if all(is_satisfied(states[p.problem_id], config) for p in problems):
            break
        samples = sample_round(
            problems,
            states,
            generator,
            verify_many,
            config,
            round_index=len(rounds),
            prompt_fn=prompt_fn,
            verifier=verifier,
            decimal_requested=decimal_requested,
        )
        if on_round is not None:
            on_round(len(rounds), samples)
        rounds.append(samples)
        update_states(states, samples, config)
    return finalize(problems, rounds, config)
